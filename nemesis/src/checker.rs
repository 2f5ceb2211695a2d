//! The checker: reads a finished history plus the final, quiescent state of the cluster and
//! lists every anomaly.
//!
//! What is checked, and why each check is sound:
//!
//! - **Conservation** is checked only on *quiescent* sweeps: the harness stops every client
//!   (an exclusive gate), waits until no replica reports a cross-partition transfer in flight,
//!   then reads every account twice and keeps the sweep only if both agree. No transfer can
//!   then be between its debit and its credit, so per currency the balances must sum to zero
//!   exactly (issuers hold the negative side) and the ordinary accounts to what was funded.
//!   Sweeps taken while transfers run are not snapshots (accounts are read one after
//!   another), so for them only per-account facts that hold at every instant are checked: no
//!   ordinary account is negative, none holds more than all money of its currency, and the
//!   issuers never move after funding.
//! - **Exactly once**: every acknowledged transfer is `COMPLETED` with the parameters sent; a
//!   rejected one is never `COMPLETED`; no transfer is left `IN_FLIGHT`; an id never gets
//!   both a success and a rejection. Then the final balances must equal the fold of exactly
//!   the `COMPLETED` transfers (acknowledged ones plus the unknown ones that were applied),
//!   each once: a transfer applied twice, or money moved without a record, breaks equality.
//! - **Push streams**: per watcher and account, updates come in sequence order with no gap
//!   and no duplicate (each is the previous sequence + 1), each change's balance is the
//!   previous balance plus its delta, no transfer id is pushed twice for an account, every
//!   pushed transfer is a `COMPLETED` one with the right signed amount, and (watches start
//!   before any money moves) the pushed ids are exactly the account's completed transfers.
//! - **Read-node history** (`ListTransfers` after the run, across the read node's restarts):
//!   per account, sequences 1..=n, consistent running balances ending at the final balance,
//!   exactly the completed transfers, each once.
//!
//! - **Holds** (`holds`): each ends once, in one of COMPLETED (captured, at most the
//!   authorized amount), VOIDED, EXPIRED or REJECTED, never PENDING after its expiry; a
//!   capture and a void never both succeed; what clients were told matches the state read
//!   back. Captured amounts join the completed transfers above, so conservation, the fold,
//!   the pushes and the read-node history count each exactly once; at the end nothing is
//!   held on any account, on the write side (`GetAccount`) or the read side (`Balance.held`).
//! - **Multi-leg transfers** (`legs`): an acknowledged set is `COMPLETED` with exactly the
//!   legs sent, a refused one never `COMPLETED` (and `REJECTED` at the leg the client was
//!   told, unless the edge refused it without recording), an unknown one either. A completed
//!   set joins the completed transfers with all its legs, so the fold, the pushes and the
//!   read-node history expect, per account and id, exactly the deltas of its legs on that
//!   account in leg order (an account in two legs has two rows under the id); a set shown
//!   with only some of its legs on an account, or (across every account's read-node history)
//!   with fewer or more than two rows per leg, is an all-or-none anomaly, and a set that is
//!   not `COMPLETED` may show nothing anywhere.
//! - **Frozen accounts** (`lifecycle`): ACCOUNT_FROZEN refusals only while an account may
//!   have been frozen; nothing acknowledged moved money while an account was frozen
//!   throughout.
//! - A transfer (or capture) across partitions refused by its target is debited and then
//!   refunded on its source: the pushes and the read-node history may show that pair (a
//!   debit, then its exact reverse) for a REJECTED id on its source account, and nothing else.
//!
//! Durability, replica agreement and progress are observed by the runner against the live
//! cluster and reported into the same anomaly list.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proto::v1::TransferStatus;
use serde::Serialize;

use crate::history::{Entry, Op, Phase};
use crate::workload::{FUNDING_MINOR, ORDINARY_PER_CURRENCY, accounts};

mod holds;
mod legs;
mod lifecycle;

/// Money that moved, by id: its legs (from, to, amount) in order. Completed transfers and
/// captured holds have one leg; a completed multi-leg set has all of its legs.
type Completed = BTreeMap<String, Vec<(String, String, i64)>>;

/// Per account, per id: the signed amounts its completed legs move on the account, in leg
/// order (what the account's pushes and read-node history must show for the id, exactly);
/// for a set across partitions, the account's net change, once (each part moves its
/// accounts' net), or nothing when it is zero.
fn deltas_by_account(completed: &Completed) -> BTreeMap<String, BTreeMap<String, Vec<i64>>> {
    let mut by_account: BTreeMap<String, BTreeMap<String, Vec<i64>>> = BTreeMap::new();
    let mut add = |account: &String, id: &String, delta: i64| {
        by_account
            .entry(account.clone())
            .or_default()
            .entry(id.clone())
            .or_default()
            .push(delta);
    };
    for (id, legs) in completed {
        if legs.len() > 1 && spans_partitions(legs) {
            for (account, net) in net_by_account(legs) {
                if net != 0 {
                    add(&account, id, net);
                }
            }
            continue;
        }
        for (from, to, amount) in legs {
            add(from, id, -amount);
            add(to, id, *amount);
        }
    }
    by_account
}

/// Whether the legs touch accounts of more than one partition.
fn spans_partitions(legs: &[(String, String, i64)]) -> bool {
    let partition = |account: &str| ledger::partition_of(account, crate::workload::PARTITIONS);
    let Some((first, _, _)) = legs.first() else {
        return false;
    };
    let home = partition(first);
    legs.iter()
        .any(|(from, to, _)| partition(from) != home || partition(to) != home)
}

/// What the legs do to each account together, in order of first appearance.
fn net_by_account(legs: &[(String, String, i64)]) -> Vec<(String, i64)> {
    let mut net: Vec<(String, i64)> = Vec::new();
    for (from, to, amount) in legs {
        for (account, delta) in [(from, -amount), (to, *amount)] {
            match net.iter_mut().find(|(known, _)| known == account) {
                Some((_, sum)) => *sum += delta,
                None => net.push((account.clone(), delta)),
            }
        }
    }
    net
}

/// Anomalies listed in full; beyond that only counted (a broken run can produce thousands).
pub const ANOMALIES_LISTED_MAX: usize = 200;

/// The final state of one transfer, as `GetTransfer` reported it after quiescence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalTransfer {
    pub status: TransferStatus,
    pub from: String,
    pub to: String,
    pub amount_minor: i64,
    pub currency: String,
    /// Set for a hold.
    pub hold: Option<FinalHold>,
    /// A multi-leg transfer's legs (from, to, amount), in order; empty for any other.
    pub legs: Vec<(String, String, i64)>,
    /// For a rejected multi-leg transfer: the first leg refused.
    pub rejected_leg: Option<u32>,
}

/// What the final state of a hold adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalHold {
    /// What a capture moved (0 if none).
    pub captured_minor: i64,
    pub expires_at_unix_ms: u64,
}

/// What is held on an account at the end, by the write side and by the read side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub write_minor: i64,
    pub read_minor: i64,
}

/// Numbers of a run and the anomalies found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub transfers_attempted: usize,
    pub transfers_acknowledged: usize,
    pub transfers_rejected: usize,
    pub transfers_unknown: usize,
    pub transfers_unknown_applied: usize,
    pub transfers_completed: usize,
    /// Multi-leg transfers (`TransferLegs`) by id: acknowledged, refused, or unknown to the
    /// client; completed (all legs applied) and rejected as `GetTransfer` reads them back.
    pub legs_attempted: usize,
    pub legs_acknowledged: usize,
    pub legs_refused: usize,
    pub legs_unknown: usize,
    pub legs_unknown_applied: usize,
    /// Sets with at least one attempt of unknown outcome (resubmitted with the same id).
    pub legs_resubmitted: usize,
    pub legs_completed: usize,
    pub legs_rejected: usize,
    /// Legs of the completed sets (each checked in the fold, pushes and read-node history).
    pub legs_moved: usize,
    /// Completed sets whose accounts span partitions (moved step by step).
    pub legs_completed_across: usize,
    /// Transfers that reused a finished transfer's id (see `workload::reuse`): each must be
    /// refused with TRANSACTION_ID_REUSED, or stay unknown; never acknowledged.
    pub reuses_attempted: usize,
    pub reuses_refused: usize,
    pub reuses_unknown: usize,
    pub holds_attempted: usize,
    pub holds_authorized: usize,
    pub holds_unknown: usize,
    pub holds_captured: usize,
    pub holds_captured_partially: usize,
    pub holds_voided: usize,
    pub holds_expired: usize,
    pub holds_rejected: usize,
    pub captures_refused: usize,
    /// Holds both a capture and a void were sent for.
    pub hold_capture_and_void: usize,
    pub freezes_acknowledged: usize,
    /// Transfers, authorizations and captures refused ACCOUNT_FROZEN.
    pub frozen_refusals: usize,
    /// Operations decided entirely while one of their accounts was surely frozen.
    pub frozen_windows_checked: usize,
    pub reads_checked: usize,
    pub quiescent_reads_checked: usize,
    pub pushes_checked: usize,
    pub history_rows_checked: usize,
    pub faults_injected: usize,
    /// Faults on a leader (kill, isolate, pause) after which the other nodes had elected
    /// another leader before the heal: evidence the fault took effect.
    pub leader_moves: usize,
    /// Replica moves (`move_replica` faults) that completed once healed.
    pub replica_moves: usize,
    pub fault_kinds: BTreeMap<String, usize>,
    /// Per healed fault: milliseconds from the heal until the cluster served again.
    pub recovery_ms: Vec<u64>,
    pub anomalies: Vec<String>,
    pub anomalies_total: usize,
}

impl Report {
    pub fn anomaly(&mut self, text: impl Into<String>) {
        self.anomalies_total += 1;
        if self.anomalies.len() < ANOMALIES_LISTED_MAX {
            self.anomalies.push(text.into());
        }
    }

    pub fn ok(&self) -> bool {
        self.anomalies_total == 0
    }
}

/// What the client sent under one id, and every outcome it saw.
struct Attempted {
    from: String,
    to: String,
    amount_minor: i64,
    currency: String,
    outcomes: Vec<Phase>,
}

/// Transfers by id from the history (the funding transfers of setup included).
fn attempted(history: &[Entry], report: &mut Report) -> BTreeMap<String, Attempted> {
    let mut by_id: BTreeMap<String, Attempted> = BTreeMap::new();
    for entry in history {
        let Op::Transfer {
            transaction_id,
            from,
            to,
            amount_minor,
            currency,
            reuse: false,
            ..
        } = &entry.op
        else {
            continue;
        };
        let record = by_id
            .entry(transaction_id.clone())
            .or_insert_with(|| Attempted {
                from: from.clone(),
                to: to.clone(),
                amount_minor: *amount_minor,
                currency: currency.clone(),
                outcomes: Vec::new(),
            });
        if (
            &record.from,
            &record.to,
            record.amount_minor,
            &record.currency,
        ) != (from, to, *amount_minor, currency)
        {
            report.anomaly(format!(
                "harness bug: id {transaction_id} sent with two parameter sets"
            ));
        }
        if entry.phase != Phase::Invoke {
            record.outcomes.push(entry.phase);
        }
    }
    by_id
}

/// Checks the history against the final state: `finals` holds `GetTransfer` for every id
/// in the history (`None`: NOT_FOUND), `final_balances` a quiescent sweep after the last
/// restart.
///
/// `read_history` is the read node's `ListTransfers` of every account after the run, oldest
/// first; it must hold exactly the account's completed transfers, sequenced 1, 2, 3, ...
/// `held` is what every account holds after every hold ended.
pub fn check(
    history: &[Entry],
    finals: &HashMap<String, Option<FinalTransfer>>,
    final_balances: &BTreeMap<String, i64>,
    read_history: &BTreeMap<String, Vec<HistoryRow>>,
    held: &BTreeMap<String, Held>,
    report: &mut Report,
) {
    let transfers = attempted(history, report);
    let mut completed = check_transfers(&transfers, finals, report);
    completed.extend(holds::check_holds(history, finals, report));
    completed.extend(legs::check_legs(history, finals, report));
    lifecycle::check_frozen(history, report);
    check_held(held, report);
    // Ids that may show as a debit and its refund on an account: a refunded transfer on its
    // source; a set across partitions refused after a part prepared, on each account whose
    // net it debited (a set within a partition, refused, moves nothing at all).
    let refunded: BTreeMap<String, BTreeSet<String>> = finals
        .iter()
        .filter_map(|(id, state)| {
            let state = state.as_ref()?;
            if state.status != TransferStatus::Rejected {
                return None;
            }
            let debited: BTreeSet<String> = if state.legs.is_empty() {
                [state.from.clone()].into()
            } else if spans_partitions(&state.legs) {
                net_by_account(&state.legs)
                    .into_iter()
                    .filter(|(_, net)| *net < 0)
                    .map(|(account, _)| account)
                    .collect()
            } else {
                return None;
            };
            Some((id.clone(), debited))
        })
        .collect();
    check_reuses(history, report);
    check_fold(&completed, final_balances, report);
    check_reads(history, report);
    check_pushes(history, &completed, &refunded, final_balances, report);
    check_read_history(read_history, &completed, &refunded, final_balances, report);
    if !read_history.is_empty() {
        legs::check_all_or_none(read_history, &completed, &legs::set_rows(history), report);
    }
}

/// Nothing is held anywhere once every hold ended.
fn check_held(held: &BTreeMap<String, Held>, report: &mut Report) {
    for (account, _, _) in accounts() {
        match held.get(&account) {
            None => report.anomaly(format!("held amount of {account} not read")),
            Some(amounts) if *amounts != Held::default() => report.anomaly(format!(
                "{account}: still holds {} (write node) / {} (read node) after every hold ended",
                amounts.write_minor, amounts.read_minor
            )),
            Some(_) => {}
        }
    }
}

/// A debit and its refund of `id` on `account`, its source: `deltas` (in order) may only be
/// one debit, or one debit and its exact reverse. Returns why not.
fn refund_pair_broken(deltas: &[i64]) -> Option<String> {
    match deltas {
        [debit] if *debit < 0 => None,
        [debit, refund] if *debit < 0 && *refund == -debit => None,
        other => Some(format!("deltas {other:?} are not one debit and its refund")),
    }
}

/// One row of an account's history on the read node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRow {
    pub sequence: u64,
    pub transaction_id: String,
    pub delta_minor: i64,
    pub balance_after_minor: i64,
}

/// The read node's per-account history (after its restarts): sequences 1..=n without gaps
/// or repeats, each balance the previous plus the delta, ending at the final balance, and
/// exactly the account's completed transfers, each once.
fn check_read_history(
    read_history: &BTreeMap<String, Vec<HistoryRow>>,
    completed: &Completed,
    refunded: &BTreeMap<String, BTreeSet<String>>,
    final_balances: &BTreeMap<String, i64>,
    report: &mut Report,
) {
    let by_account = deltas_by_account(completed);
    let nothing = BTreeMap::new();
    for (account, _, _) in accounts() {
        let Some(rows) = read_history.get(&account) else {
            report.anomaly(format!("read-node history of {account} missing"));
            continue;
        };
        let want_by_id = by_account.get(&account).unwrap_or(&nothing);
        report.history_rows_checked += rows.len();
        let mut balance = 0;
        // Per id, the deltas recorded (in order): each leg of the id on this account once.
        let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut refunds: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for (position, row) in rows.iter().enumerate() {
            let at = format!("read-node history {account} #{}", row.sequence);
            if row.sequence != position as u64 + 1 {
                report.anomaly(format!("{at}: expected sequence {}", position + 1));
            }
            balance += row.delta_minor;
            if row.balance_after_minor != balance {
                report.anomaly(format!(
                    "{at}: balance after {} but the deltas sum to {balance}",
                    row.balance_after_minor
                ));
            }
            if !completed.contains_key(&row.transaction_id)
                && refunded
                    .get(&row.transaction_id)
                    .is_some_and(|debited| debited.contains(&account))
            {
                let deltas = refunds.entry(&row.transaction_id).or_default();
                deltas.push(row.delta_minor);
                if let Some(why) = refund_pair_broken(deltas) {
                    report.anomaly(format!("{at}: {} {why}", row.transaction_id));
                }
                continue;
            }
            let deltas = seen.entry(row.transaction_id.clone()).or_default();
            deltas.push(row.delta_minor);
            let legs = want_by_id.get(&row.transaction_id).map_or(0, Vec::len);
            if deltas.len() > legs.max(1) {
                report.anomaly(format!(
                    "{at}: {} recorded twice ({} rows, {legs} legs on this account)",
                    row.transaction_id,
                    deltas.len()
                ));
            }
        }
        for (id, deltas) in &seen {
            if let Some(want) = want_by_id.get(id)
                && deltas.len() <= want.len()
                && deltas != want
            {
                report.anomaly(format!(
                    "read-node history {account}: {id} moved {deltas:?}, its legs {want:?}"
                ));
            }
        }
        let ids: BTreeSet<String> = seen.into_keys().collect();
        for (id, deltas) in &refunds {
            if deltas.len() != 2 {
                report.anomaly(format!(
                    "read-node history {account}: {id} debited, never refunded"
                ));
            }
        }
        if final_balances.get(&account) != Some(&balance) {
            report.anomaly(format!(
                "read-node history of {account} sums to {balance}, final balance {:?}",
                final_balances.get(&account)
            ));
        }
        let want: BTreeSet<String> = want_by_id.keys().cloned().collect();
        if ids != want {
            report.anomaly(format!(
                "read-node history of {account}: {} transfers, {} completed ({} missing, {} extra)",
                ids.len(),
                want.len(),
                want.difference(&ids).count(),
                ids.difference(&want).count()
            ));
        }
    }
}

/// Exactly once, per id. Returns the completed transfers: id → (from, to, amount).
fn check_transfers(
    transfers: &BTreeMap<String, Attempted>,
    finals: &HashMap<String, Option<FinalTransfer>>,
    report: &mut Report,
) -> Completed {
    let mut completed = BTreeMap::new();
    for (id, sent) in transfers {
        report.transfers_attempted += 1;
        let acknowledged = sent.outcomes.contains(&Phase::Ok);
        let rejected = sent.outcomes.contains(&Phase::Fail);
        if acknowledged {
            report.transfers_acknowledged += 1;
        } else if rejected {
            report.transfers_rejected += 1;
        } else {
            report.transfers_unknown += 1;
        }
        if acknowledged && rejected {
            report.anomaly(format!(
                "{id}: both acknowledged and rejected: {:?}",
                sent.outcomes
            ));
        }
        let Some(found) = finals.get(id) else {
            report.anomaly(format!("harness bug: no final GetTransfer for {id}"));
            continue;
        };
        match found {
            Some(state) if state.status == TransferStatus::Completed => {
                let params = (&state.from, &state.to, state.amount_minor, &state.currency);
                if params != (&sent.from, &sent.to, sent.amount_minor, &sent.currency) {
                    report.anomaly(format!("{id}: completed with other parameters: {state:?}"));
                }
                if rejected {
                    report.anomaly(format!("{id}: rejected to the client but COMPLETED"));
                }
                if !acknowledged && !rejected {
                    report.transfers_unknown_applied += 1;
                }
                report.transfers_completed += 1;
                completed.insert(
                    id.clone(),
                    vec![(state.from.clone(), state.to.clone(), state.amount_minor)],
                );
            }
            Some(state) if state.status == TransferStatus::InFlight => {
                report.anomaly(format!("{id}: still IN_FLIGHT after quiescence"));
            }
            other => {
                if acknowledged {
                    report.anomaly(format!(
                        "{id}: acknowledged but lost (final state {:?})",
                        other.as_ref().map(|s| s.status)
                    ));
                }
            }
        }
    }
    completed
}

/// A reused id is refused, never acknowledged. Whether it moved money is checked by the
/// fold, the pushes and the read history, which count only the first transfer of each id.
fn check_reuses(history: &[Entry], report: &mut Report) {
    for entry in history {
        let Op::Transfer {
            transaction_id,
            detail,
            reuse: true,
            ..
        } = &entry.op
        else {
            continue;
        };
        match entry.phase {
            Phase::Invoke => report.reuses_attempted += 1,
            Phase::Fail if detail == "TRANSACTION_ID_REUSED" => report.reuses_refused += 1,
            Phase::Unknown => report.reuses_unknown += 1,
            Phase::Ok | Phase::Fail => report.anomaly(format!(
                "t={}ms: {transaction_id} reused for other parameters answered {:?} ({detail})",
                entry.time_ms, entry.phase
            )),
        }
    }
}

/// The final balances are the fold of the completed transfers, each applied once.
fn check_fold(completed: &Completed, final_balances: &BTreeMap<String, i64>, report: &mut Report) {
    let mut expected: BTreeMap<String, i64> =
        accounts().into_iter().map(|(id, _, _)| (id, 0)).collect();
    for (from, to, amount) in completed.values().flatten() {
        *expected.entry(from.clone()).or_default() -= amount;
        *expected.entry(to.clone()).or_default() += amount;
    }
    for (account, want) in &expected {
        match final_balances.get(account) {
            Some(got) if got == want => {}
            got => report.anomaly(format!(
                "{account}: final balance {got:?}, fold of completed transfers {want}"
            )),
        }
    }
}

/// Conservation on quiescent sweeps, per-account bounds on every sweep.
fn check_reads(history: &[Entry], report: &mut Report) {
    let all = accounts();
    let currency_total = ORDINARY_PER_CURRENCY as i64 * FUNDING_MINOR;
    for entry in history {
        let Op::Read {
            balances,
            quiescent,
        } = &entry.op
        else {
            continue;
        };
        if entry.phase != Phase::Ok {
            continue;
        }
        report.reads_checked += 1;
        let values: HashMap<&str, i64> = balances.iter().map(|(a, b)| (a.as_str(), *b)).collect();
        let mut sums: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for (account, currency, issuer) in &all {
            let Some(&balance) = values.get(account.as_str()) else {
                report.anomaly(format!("t={}ms: sweep without {account}", entry.time_ms));
                continue;
            };
            let sum = sums.entry(currency).or_default();
            sum.0 += balance;
            if *issuer {
                if balance != -currency_total {
                    report.anomaly(format!(
                        "t={}ms: issuer {account} at {balance}, funded {}",
                        entry.time_ms, -currency_total
                    ));
                }
            } else {
                sum.1 += balance;
                if balance < 0 {
                    report.anomaly(format!(
                        "t={}ms: {account} negative: {balance}",
                        entry.time_ms
                    ));
                }
                if balance > currency_total {
                    report.anomaly(format!(
                        "t={}ms: {account} holds {balance}, more than all {currency} ({currency_total})",
                        entry.time_ms
                    ));
                }
            }
        }
        if *quiescent {
            report.quiescent_reads_checked += 1;
            for (currency, (all_sum, ordinary_sum)) in sums {
                if all_sum != 0 || ordinary_sum != currency_total {
                    report.anomaly(format!(
                        "t={}ms: {currency} not conserved at quiescence: sum {all_sum}, ordinary \
                         {ordinary_sum} (want 0 and {currency_total})",
                        entry.time_ms
                    ));
                }
            }
        }
    }
}

/// Per watcher and account: ordered, gap-free, duplicate-free, consistent, complete.
fn check_pushes(
    history: &[Entry],
    completed: &Completed,
    refunded: &BTreeMap<String, BTreeSet<String>>,
    final_balances: &BTreeMap<String, i64>,
    report: &mut Report,
) {
    // (watcher, account) → (last sequence, last balance, first sequence, deltas pushed per
    // completed id: one per leg of the id on the account).
    type Stream = (u64, i64, u64, BTreeMap<String, Vec<i64>>);
    let by_account = deltas_by_account(completed);
    let nothing = BTreeMap::new();
    // (watcher, account, id) → deltas pushed for a refunded id.
    let mut refunds: BTreeMap<(String, String, String), Vec<i64>> = BTreeMap::new();
    let mut streams: BTreeMap<(String, String), Stream> = BTreeMap::new();
    for entry in history {
        let Op::Push {
            watcher,
            account_id,
            sequence,
            snapshot,
            balance_minor,
            delta_minor,
            transaction_id,
        } = &entry.op
        else {
            continue;
        };
        report.pushes_checked += 1;
        let at = format!("t={}ms {watcher} {account_id} #{sequence}", entry.time_ms);
        let key = (watcher.clone(), account_id.clone());
        let Some(stream) = streams.get_mut(&key) else {
            if !snapshot {
                report.anomaly(format!("{at}: first update is not a snapshot"));
            }
            streams.insert(key, (*sequence, *balance_minor, *sequence, BTreeMap::new()));
            continue;
        };
        if *snapshot {
            report.anomaly(format!("{at}: a second snapshot (after #{})", stream.0));
        }
        if *sequence != stream.0 + 1 {
            let what = if *sequence <= stream.0 {
                "duplicate or out of order"
            } else {
                "gap"
            };
            report.anomaly(format!("{at}: {what}, previous #{}", stream.0));
        }
        if *balance_minor != stream.1 + delta_minor {
            report.anomaly(format!(
                "{at}: balance {balance_minor} != previous {} + delta {delta_minor}",
                stream.1
            ));
        }
        match completed.get(transaction_id) {
            Some(_) => {
                let want = by_account
                    .get(account_id)
                    .and_then(|ids| ids.get(transaction_id))
                    .map_or(&[][..], Vec::as_slice);
                let pushed = stream.3.entry(transaction_id.clone()).or_default();
                match want.get(pushed.len()) {
                    None if pushed.is_empty() => report.anomaly(format!(
                        "{at}: delta {delta_minor} for {transaction_id}, want 0"
                    )),
                    None => report.anomaly(format!("{at}: {transaction_id} pushed twice")),
                    Some(want) if delta_minor != want => report.anomaly(format!(
                        "{at}: delta {delta_minor} for {transaction_id}, want {want}"
                    )),
                    Some(_) => {}
                }
                pushed.push(*delta_minor);
            }
            None if refunded
                .get(transaction_id)
                .is_some_and(|debited| debited.contains(account_id)) =>
            {
                let key = (watcher.clone(), account_id.clone(), transaction_id.clone());
                let deltas = refunds.entry(key).or_default();
                deltas.push(*delta_minor);
                if let Some(why) = refund_pair_broken(deltas) {
                    report.anomaly(format!("{at}: {transaction_id} {why}"));
                }
                stream.0 = stream.0.max(*sequence);
                stream.1 = *balance_minor;
                continue;
            }
            None => {
                let pushed = stream.3.entry(transaction_id.clone()).or_default();
                if !pushed.is_empty() {
                    report.anomaly(format!("{at}: {transaction_id} pushed twice"));
                }
                pushed.push(*delta_minor);
                report.anomaly(format!(
                    "{at}: pushed {transaction_id}, which is not COMPLETED"
                ));
            }
        }
        stream.0 = stream.0.max(*sequence);
        stream.1 = *balance_minor;
    }
    for ((watcher, account, id), deltas) in &refunds {
        if deltas.len() != 2 {
            report.anomaly(format!(
                "{watcher} {account}: {id} debited, its refund never pushed"
            ));
        }
    }
    let watchers: BTreeSet<String> = streams.keys().map(|(w, _)| w.clone()).collect();
    for watcher in watchers {
        for (account, _, _) in accounts() {
            let Some((_, balance, first, ids)) = streams.get(&(watcher.clone(), account.clone()))
            else {
                report.anomaly(format!("{watcher}: nothing pushed for {account}"));
                continue;
            };
            if final_balances.get(&account) != Some(balance) {
                report.anomaly(format!(
                    "{watcher} {account}: last pushed balance {balance}, final {:?}",
                    final_balances.get(&account)
                ));
            }
            if *first == 0 {
                let want_by_id = by_account.get(&account).unwrap_or(&nothing);
                for (id, want) in want_by_id {
                    let got = ids.get(id).map_or(0, Vec::len);
                    if 0 < got && got < want.len() {
                        report.anomaly(format!(
                            "{watcher} {account}: pushed {got} of the {} legs of {id} on it \
                             (all or none)",
                            want.len()
                        ));
                    }
                }
                let want: BTreeSet<&String> = want_by_id.keys().collect();
                let ids: BTreeSet<&String> = ids.keys().collect();
                if ids != want {
                    report.anomaly(format!(
                        "{watcher} {account}: pushed {} transfers, {} completed ({} missing, {} extra)",
                        ids.len(),
                        want.len(),
                        want.difference(&ids).count(),
                        ids.difference(&want).count()
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The checker must catch what it claims to catch: each case below breaks one property.

    use super::*;
    use crate::history::{AccountChange, HoldStep};

    fn entry(time_ms: u64, phase: Phase, op: Op) -> Entry {
        Entry {
            time_ms,
            process: "test".into(),
            phase,
            op,
        }
    }

    fn transfer(id: &str, from: &str, to: &str, amount: i64) -> Op {
        Op::Transfer {
            transaction_id: id.into(),
            from: from.into(),
            to: to.into(),
            amount_minor: amount,
            currency: "USD".into(),
            detail: String::new(),
            reuse: false,
        }
    }

    fn completed(from: &str, to: &str, amount: i64) -> Option<FinalTransfer> {
        Some(FinalTransfer {
            status: TransferStatus::Completed,
            from: from.into(),
            to: to.into(),
            amount_minor: amount,
            currency: "USD".into(),
            hold: None,
            legs: Vec::new(),
            rejected_leg: None,
        })
    }

    /// Nothing held anywhere.
    fn nothing_held() -> BTreeMap<String, Held> {
        accounts()
            .into_iter()
            .map(|(id, _, _)| (id, Held::default()))
            .collect()
    }

    /// Balances after funding every ordinary account and moving `moved` from usd-0 to usd-1.
    fn balances(moved: i64) -> BTreeMap<String, i64> {
        let mut all: BTreeMap<String, i64> = accounts()
            .into_iter()
            .map(|(id, _, issuer)| {
                let value = if issuer {
                    -(ORDINARY_PER_CURRENCY as i64) * FUNDING_MINOR
                } else {
                    FUNDING_MINOR
                };
                (id, value)
            })
            .collect();
        *all.get_mut("nem-usd-0").unwrap() -= moved;
        *all.get_mut("nem-usd-1").unwrap() += moved;
        all
    }

    /// Funding of every account as completed transfers f-<account>.
    fn funding() -> (Vec<Entry>, HashMap<String, Option<FinalTransfer>>) {
        let mut history = Vec::new();
        let mut finals = HashMap::new();
        for (id, currency, issuer) in accounts() {
            if issuer {
                continue;
            }
            let from = crate::workload::issuer(currency);
            let mut op = transfer(&format!("f-{id}"), &from, &id, FUNDING_MINOR);
            if let Op::Transfer { currency: c, .. } = &mut op {
                *c = currency.into();
            }
            history.push(entry(0, Phase::Invoke, op.clone()));
            history.push(entry(1, Phase::Ok, op));
            let mut done = completed(&from, &id, FUNDING_MINOR);
            done.as_mut().unwrap().currency = currency.into();
            finals.insert(format!("f-{id}"), done);
        }
        (history, finals)
    }

    fn run(
        history: &[Entry],
        finals: &HashMap<String, Option<FinalTransfer>>,
        end: &BTreeMap<String, i64>,
    ) -> Report {
        let mut report = Report::default();
        check(
            history,
            finals,
            end,
            &BTreeMap::new(),
            &nothing_held(),
            &mut report,
        );
        report
    }

    fn reuse(id: &str, from: &str, to: &str, detail: &str) -> Op {
        let mut op = transfer(id, from, to, 7);
        if let Op::Transfer {
            detail: d, reuse, ..
        } = &mut op
        {
            *d = detail.into();
            *reuse = true;
        }
        op
    }

    #[test]
    fn a_reused_id_must_be_refused() {
        let (mut history, mut finals) = funding();
        let op = transfer("t1", "nem-usd-0", "nem-usd-1", 500);
        history.push(entry(5, Phase::Invoke, op.clone()));
        history.push(entry(6, Phase::Ok, op));
        finals.insert("t1".into(), completed("nem-usd-0", "nem-usd-1", 500));
        let refused = reuse("t1", "nem-usd-1", "nem-usd-2", "TRANSACTION_ID_REUSED");
        history.push(entry(7, Phase::Invoke, refused.clone()));
        history.push(entry(8, Phase::Fail, refused));
        // (`run` passes no read-node history, so those checks report it missing; only the
        // anomalies about the reuse matter here.)
        let about_reuse = |report: &Report| -> Vec<String> {
            let anomalies = report.anomalies.iter();
            anomalies
                .filter(|text| !text.contains("read-node history"))
                .cloned()
                .collect()
        };
        let clean = run(&history, &finals, &balances(500));
        assert_eq!(about_reuse(&clean), Vec::<String>::new());
        assert_eq!((clean.reuses_attempted, clean.reuses_refused), (1, 1));

        // Acknowledged, or refused for another reason: both are anomalies.
        for (phase, detail) in [(Phase::Ok, "v1.0.9"), (Phase::Fail, "INSUFFICIENT_FUNDS")] {
            let mut broken = history.clone();
            broken.push(entry(
                9,
                phase,
                reuse("t1", "nem-usd-0", "nem-usd-3", detail),
            ));
            let anomalies = about_reuse(&run(&broken, &finals, &balances(500)));
            assert_eq!(anomalies.len(), 1, "{anomalies:?}");
            assert!(anomalies[0].contains("reused"), "{anomalies:?}");
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let (mut history, mut finals) = funding();
        let op = transfer("t1", "nem-usd-0", "nem-usd-1", 500);
        history.push(entry(5, Phase::Invoke, op.clone()));
        history.push(entry(6, Phase::Unknown, op.clone()));
        finals.insert("t1".into(), completed("nem-usd-0", "nem-usd-1", 500));
        history.push(entry(
            7,
            Phase::Ok,
            Op::Read {
                balances: balances(500).into_iter().collect(),
                quiescent: true,
            },
        ));
        // The read node's history: funding, then t1, as the checker wants it.
        let mut order: Vec<(String, String, String, i64)> = finals
            .iter()
            .filter(|(id, _)| id.starts_with("f-"))
            .map(|(id, t)| {
                let t = t.as_ref().unwrap();
                (id.clone(), t.from.clone(), t.to.clone(), t.amount_minor)
            })
            .collect();
        order.sort();
        order.push(("t1".into(), "nem-usd-0".into(), "nem-usd-1".into(), 500));
        let mut read_history: BTreeMap<String, Vec<HistoryRow>> = BTreeMap::new();
        for (id, from, to, amount) in order {
            for (account, delta) in [(from, -amount), (to, amount)] {
                let rows = read_history.entry(account).or_default();
                let before = rows
                    .last()
                    .map_or(0, |r: &HistoryRow| r.balance_after_minor);
                rows.push(HistoryRow {
                    sequence: rows.len() as u64 + 1,
                    transaction_id: id.clone(),
                    delta_minor: delta,
                    balance_after_minor: before + delta,
                });
            }
        }
        let mut report = Report::default();
        check(
            &history,
            &finals,
            &balances(500),
            &read_history,
            &nothing_held(),
            &mut report,
        );
        assert!(report.ok(), "{:?}", report.anomalies);
        assert_eq!(report.transfers_unknown_applied, 1);

        // The same read history with one row repeated is caught.
        let rows = read_history.get_mut("nem-usd-1").unwrap();
        let repeated = rows[0].clone();
        rows.insert(1, repeated);
        let mut report = Report::default();
        check(
            &history,
            &finals,
            &balances(500),
            &read_history,
            &nothing_held(),
            &mut report,
        );
        assert!(
            report
                .anomalies
                .iter()
                .any(|a| a.contains("recorded twice")),
            "{:?}",
            report.anomalies
        );
        assert_eq!(report.quiescent_reads_checked, 1);
    }

    #[test]
    fn a_lost_acknowledged_transfer_is_caught() {
        let (mut history, mut finals) = funding();
        let op = transfer("t1", "nem-usd-0", "nem-usd-1", 500);
        history.push(entry(5, Phase::Invoke, op.clone()));
        history.push(entry(6, Phase::Ok, op));
        finals.insert("t1".into(), None);
        let report = run(&history, &finals, &balances(0));
        assert!(
            report
                .anomalies
                .iter()
                .any(|a| a.contains("acknowledged but lost")),
            "{:?}",
            report.anomalies
        );
    }

    #[test]
    fn a_double_application_is_caught() {
        let (mut history, mut finals) = funding();
        let op = transfer("t1", "nem-usd-0", "nem-usd-1", 500);
        history.push(entry(5, Phase::Invoke, op.clone()));
        history.push(entry(6, Phase::Ok, op));
        finals.insert("t1".into(), completed("nem-usd-0", "nem-usd-1", 500));
        let report = run(&history, &finals, &balances(1000));
        assert!(
            report
                .anomalies
                .iter()
                .any(|a| a.contains("fold of completed")),
            "{:?}",
            report.anomalies
        );
    }

    #[test]
    fn non_conservation_and_negative_reads_are_caught() {
        let (mut history, finals) = funding();
        let mut broken = balances(0);
        *broken.get_mut("nem-usd-2").unwrap() = -1;
        history.push(entry(
            7,
            Phase::Ok,
            Op::Read {
                balances: broken.into_iter().collect(),
                quiescent: true,
            },
        ));
        let report = run(&history, &finals, &balances(0));
        assert!(report.anomalies.iter().any(|a| a.contains("negative")));
        assert!(report.anomalies.iter().any(|a| a.contains("not conserved")));
    }

    #[test]
    fn gaps_and_duplicates_in_pushes_are_caught() {
        let (mut history, mut finals) = funding();
        let push = |sequence, snapshot, balance, delta, id: &str| Op::Push {
            watcher: "w".into(),
            account_id: "nem-usd-1".into(),
            sequence,
            snapshot,
            balance_minor: balance,
            delta_minor: delta,
            transaction_id: id.into(),
        };
        finals.insert("t1".into(), completed("nem-usd-0", "nem-usd-1", 5));
        history.push(entry(1, Phase::Ok, push(0, true, 0, 0, "")));
        history.push(entry(
            2,
            Phase::Ok,
            push(1, false, FUNDING_MINOR, FUNDING_MINOR, "f-nem-usd-1"),
        ));
        history.push(entry(
            3,
            Phase::Ok,
            push(1, false, FUNDING_MINOR, FUNDING_MINOR, "f-nem-usd-1"),
        ));
        history.push(entry(
            4,
            Phase::Ok,
            push(3, false, FUNDING_MINOR + 5, 5, "t1"),
        ));
        let report = run(&history, &finals, &balances(0));
        let text = report.anomalies.join("\n");
        assert!(text.contains("duplicate"), "{text}");
        assert!(text.contains("pushed twice"), "{text}");
        assert!(text.contains("gap"), "{text}");
    }

    fn hold_op(step: HoldStep, amount: i64, detail: &str, captured: i64) -> Op {
        Op::Hold {
            step,
            transaction_id: "h1".into(),
            from: "nem-usd-0".into(),
            to: "nem-usd-1".into(),
            currency: "USD".into(),
            amount_minor: amount,
            timeout_ms: if step == HoldStep::Authorize { 4000 } else { 0 },
            detail: detail.into(),
            captured_minor: captured,
        }
    }

    /// The history of funding plus hold h1 (500 from usd-0 to usd-1) authorized at t=10..11.
    fn authorized() -> (Vec<Entry>, HashMap<String, Option<FinalTransfer>>) {
        let (mut history, finals) = funding();
        history.push(entry(
            10,
            Phase::Invoke,
            hold_op(HoldStep::Authorize, 500, "", 0),
        ));
        history.push(entry(
            11,
            Phase::Ok,
            hold_op(HoldStep::Authorize, 500, "PENDING", 0),
        ));
        (history, finals)
    }

    /// Records one step of h1 sent at `time` and ended at `time + 1`.
    fn step(history: &mut Vec<Entry>, time: u64, phase: Phase, op: Op) {
        history.push(entry(time, Phase::Invoke, op.clone()));
        history.push(entry(time + 1, phase, op));
    }

    fn hold_final(status: TransferStatus, captured: i64) -> Option<FinalTransfer> {
        let mut state = completed("nem-usd-0", "nem-usd-1", 500);
        let state_ref = state.as_mut().unwrap();
        state_ref.status = status;
        state_ref.hold = Some(FinalHold {
            captured_minor: captured,
            expires_at_unix_ms: 1,
        });
        state
    }

    /// The anomalies about hold h1 (the helpers pass no read-node history).
    fn about_hold(report: &Report) -> Vec<String> {
        let anomalies = report.anomalies.iter();
        anomalies
            .filter(|text| text.contains("h1") || text.contains("fold"))
            .cloned()
            .collect()
    }

    #[test]
    fn a_hold_captured_and_voided_is_caught() {
        let (mut history, mut finals) = authorized();
        step(
            &mut history,
            20,
            Phase::Ok,
            hold_op(HoldStep::Capture, 0, "COMPLETED", 500),
        );
        finals.insert("h1".into(), hold_final(TransferStatus::Completed, 500));
        // The void that lost the race is refused: clean.
        let mut clean = history.clone();
        step(
            &mut clean,
            20,
            Phase::Fail,
            hold_op(HoldStep::Void, 0, "HOLD_ALREADY_CAPTURED", 0),
        );
        let report = run(&clean, &finals, &balances(500));
        assert_eq!(about_hold(&report), Vec::<String>::new());
        assert_eq!(
            (report.holds_captured, report.hold_capture_and_void),
            (1, 1)
        );

        // Both acknowledged: caught.
        step(
            &mut history,
            20,
            Phase::Ok,
            hold_op(HoldStep::Void, 0, "VOIDED", 0),
        );
        let anomalies = about_hold(&run(&history, &finals, &balances(500)));
        assert!(
            anomalies
                .iter()
                .any(|a| a.contains("both a capture and a void")),
            "{anomalies:?}"
        );
        assert!(
            anomalies.iter().any(|a| a.contains("void acknowledged")),
            "{anomalies:?}"
        );
    }

    #[test]
    fn a_capture_above_the_authorization_is_caught() {
        let (mut history, mut finals) = authorized();
        step(
            &mut history,
            20,
            Phase::Ok,
            hold_op(HoldStep::Capture, 0, "COMPLETED", 600),
        );
        finals.insert("h1".into(), hold_final(TransferStatus::Completed, 600));
        let anomalies = about_hold(&run(&history, &finals, &balances(600)));
        assert!(
            anomalies.iter().any(|a| a.contains("above the authorized")),
            "{anomalies:?}"
        );
        assert!(
            anomalies
                .iter()
                .any(|a| a.contains("captured 600, authorized 500")),
            "{anomalies:?}"
        );
    }

    #[test]
    fn a_lost_acknowledged_capture_is_caught() {
        let (mut history, mut finals) = authorized();
        step(
            &mut history,
            20,
            Phase::Ok,
            hold_op(HoldStep::Capture, 300, "COMPLETED", 300),
        );
        // The hold ended otherwise: the capture was lost.
        finals.insert("h1".into(), hold_final(TransferStatus::Expired, 0));
        let anomalies = about_hold(&run(&history, &finals, &balances(0)));
        assert!(
            anomalies
                .iter()
                .any(|a| a.contains("acknowledged but lost")),
            "{anomalies:?}"
        );
        // The hold says captured, the balances do not show it: the fold catches it.
        finals.insert("h1".into(), hold_final(TransferStatus::Completed, 300));
        let anomalies = about_hold(&run(&history, &finals, &balances(0)));
        assert!(
            anomalies.iter().any(|a| a.contains("fold of completed")),
            "{anomalies:?}"
        );
        assert_eq!(
            about_hold(&run(&history, &finals, &balances(300))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn money_moved_by_a_refused_capture_is_caught() {
        let (mut history, mut finals) = authorized();
        step(
            &mut history,
            20,
            Phase::Fail,
            hold_op(HoldStep::Capture, 0, "HOLD_EXPIRED", 0),
        );
        finals.insert("h1".into(), hold_final(TransferStatus::Completed, 500));
        let anomalies = about_hold(&run(&history, &finals, &balances(500)));
        assert!(
            anomalies
                .iter()
                .any(|a| a.contains("every capture was refused")),
            "{anomalies:?}"
        );
        assert!(
            anomalies.iter().any(|a| a.contains("refused HOLD_EXPIRED")),
            "{anomalies:?}"
        );
    }

    #[test]
    fn a_pending_hold_and_held_money_at_the_end_are_caught() {
        let (history, mut finals) = authorized();
        finals.insert("h1".into(), hold_final(TransferStatus::Pending, 0));
        let mut held = nothing_held();
        held.insert(
            "nem-usd-0".into(),
            Held {
                write_minor: 500,
                read_minor: 0,
            },
        );
        let mut report = Report::default();
        check(
            &history,
            &finals,
            &balances(0),
            &BTreeMap::new(),
            &held,
            &mut report,
        );
        let text = report.anomalies.join("\n");
        assert!(text.contains("still PENDING"), "{text}");
        assert!(text.contains("nem-usd-0: still holds 500"), "{text}");
    }

    #[test]
    fn moves_while_frozen_and_refusals_while_not_are_caught() {
        let (mut history, mut finals) = funding();
        let change = |change| Op::Account {
            change,
            account_id: "nem-usd-1".into(),
            detail: String::new(),
        };
        history.push(entry(10, Phase::Invoke, change(AccountChange::Freeze)));
        history.push(entry(12, Phase::Ok, change(AccountChange::Freeze)));
        history.push(entry(100, Phase::Invoke, change(AccountChange::Unfreeze)));
        history.push(entry(102, Phase::Ok, change(AccountChange::Unfreeze)));
        let refused = |id: &str| {
            let mut op = transfer(id, "nem-usd-0", "nem-usd-1", 5);
            if let Op::Transfer { detail, .. } = &mut op {
                *detail = "ACCOUNT_FROZEN".into();
            }
            op
        };
        // Refused while frozen: sound. Acknowledged while frozen throughout, and refused
        // long after the unfreeze: both caught.
        step(&mut history, 50, Phase::Fail, refused("t-ok"));
        step(&mut history, 200, Phase::Fail, refused("t-late"));
        step(
            &mut history,
            20,
            Phase::Ok,
            transfer("t-moved", "nem-usd-0", "nem-usd-1", 5),
        );
        finals.insert("t-ok".into(), None);
        finals.insert("t-late".into(), None);
        finals.insert("t-moved".into(), completed("nem-usd-0", "nem-usd-1", 5));
        let report = run(&history, &finals, &balances(5));
        let frozen: Vec<&String> = report
            .anomalies
            .iter()
            .filter(|a| a.contains("frozen"))
            .collect();
        assert_eq!(frozen.len(), 2, "{frozen:?}");
        assert!(
            frozen
                .iter()
                .any(|a| a.contains("transfer t-moved acknowledged"))
        );
        assert!(frozen.iter().any(|a| a.contains("transfer t-late refused")));
        assert_eq!(report.frozen_refusals, 2);
    }

    #[test]
    fn a_refund_shows_as_a_debit_and_its_reverse_only() {
        let (mut history, mut finals) = funding();
        finals.insert(
            "t1".into(),
            Some(FinalTransfer {
                status: TransferStatus::Rejected,
                ..completed("nem-usd-0", "nem-usd-1", 5).unwrap()
            }),
        );
        let push = |sequence, balance, delta| Op::Push {
            watcher: "w".into(),
            account_id: "nem-usd-0".into(),
            sequence,
            snapshot: sequence == 0,
            balance_minor: balance,
            delta_minor: delta,
            transaction_id: if sequence == 0 {
                String::new()
            } else {
                "t1".into()
            },
        };
        history.push(entry(1, Phase::Ok, push(0, FUNDING_MINOR, 0)));
        history.push(entry(2, Phase::Ok, push(1, FUNDING_MINOR - 5, -5)));
        let about_t1 = |history: &[Entry]| -> Vec<String> {
            let report = run(history, &finals, &balances(0));
            report
                .anomalies
                .into_iter()
                .filter(|a| a.contains("t1"))
                .collect()
        };
        assert!(about_t1(&history)[0].contains("never pushed"));
        let mut refunded = history.clone();
        refunded.push(entry(3, Phase::Ok, push(2, FUNDING_MINOR, 5)));
        assert_eq!(about_t1(&refunded), Vec::<String>::new());
        let mut twice = refunded.clone();
        twice.push(entry(4, Phase::Ok, push(3, FUNDING_MINOR + 5, 5)));
        assert!(about_t1(&twice)[0].contains("not one debit and its refund"));
    }

    // Multi-leg sets. Moves are (id, from, to, amount) in the order the ledger applied them;
    // the balances, the read node's history and the pushes are derived from them.
    type Move = (String, String, String, i64);

    fn legs_op(id: &str, legs: &[(&str, &str, i64)], detail: &str, leg: Option<u32>) -> Op {
        Op::Legs {
            transaction_id: id.into(),
            currency: "USD".into(),
            legs: legs
                .iter()
                .map(|(from, to, amount)| crate::history::Leg {
                    from: (*from).into(),
                    to: (*to).into(),
                    amount_minor: *amount,
                })
                .collect(),
            detail: detail.into(),
            leg,
        }
    }

    fn legs_final(
        status: TransferStatus,
        legs: &[(&str, &str, i64)],
        rejected_leg: Option<u32>,
    ) -> Option<FinalTransfer> {
        Some(FinalTransfer {
            status,
            from: String::new(),
            to: String::new(),
            amount_minor: 0,
            currency: "USD".into(),
            hold: None,
            legs: legs
                .iter()
                .map(|(from, to, amount)| ((*from).into(), (*to).into(), *amount))
                .collect(),
            rejected_leg,
        })
    }

    /// The funding moves, in id order (as `a_clean_history_passes` orders them).
    fn funding_moves(finals: &HashMap<String, Option<FinalTransfer>>) -> Vec<Move> {
        let mut moves: Vec<Move> = finals
            .iter()
            .filter(|(id, _)| id.starts_with("f-"))
            .map(|(id, t)| {
                let t = t.as_ref().unwrap();
                (id.clone(), t.from.clone(), t.to.clone(), t.amount_minor)
            })
            .collect();
        moves.sort();
        moves
    }

    fn balances_of(moves: &[Move]) -> BTreeMap<String, i64> {
        let mut all: BTreeMap<String, i64> =
            accounts().into_iter().map(|(id, _, _)| (id, 0)).collect();
        for (_, from, to, amount) in moves {
            *all.get_mut(from).unwrap() -= amount;
            *all.get_mut(to).unwrap() += amount;
        }
        all
    }

    fn read_history_of(moves: &[Move]) -> BTreeMap<String, Vec<HistoryRow>> {
        let mut all: BTreeMap<String, Vec<HistoryRow>> = accounts()
            .into_iter()
            .map(|(id, _, _)| (id, Vec::new()))
            .collect();
        for (id, from, to, amount) in moves {
            for (account, delta) in [(from, -amount), (to, *amount)] {
                let rows = all.get_mut(account).unwrap();
                let before = rows.last().map_or(0, |r| r.balance_after_minor);
                rows.push(HistoryRow {
                    sequence: rows.len() as u64 + 1,
                    transaction_id: id.clone(),
                    delta_minor: delta,
                    balance_after_minor: before + delta,
                });
            }
        }
        all
    }

    /// What a watcher started before any money moved is pushed: a snapshot, then each row.
    fn pushes_of(read_history: &BTreeMap<String, Vec<HistoryRow>>) -> Vec<Entry> {
        let mut pushes = Vec::new();
        for (account, rows) in read_history {
            let push = |sequence, snapshot, balance, delta, id: &str| Op::Push {
                watcher: "w".into(),
                account_id: account.clone(),
                sequence,
                snapshot,
                balance_minor: balance,
                delta_minor: delta,
                transaction_id: id.into(),
            };
            pushes.push(entry(2, Phase::Ok, push(0, true, 0, 0, "")));
            for row in rows {
                pushes.push(entry(
                    3,
                    Phase::Ok,
                    push(
                        row.sequence,
                        false,
                        row.balance_after_minor,
                        row.delta_minor,
                        &row.transaction_id,
                    ),
                ));
            }
        }
        pushes
    }

    /// s1: acknowledged, passes money through usd-1 (which could not pay 120000 alone);
    /// s2: refused INSUFFICIENT_FUNDS at leg 1 (REJECTED); s3: unknown, applied; s4: unknown,
    /// not applied; s5: refused LEGS_SPAN_PARTITIONS (never recorded).
    const S1: [(&str, &str, i64); 2] = [
        ("nem-usd-0", "nem-usd-4", 50_000),
        ("nem-usd-4", "nem-usd-5", 120_000),
    ];
    const S2: [(&str, &str, i64); 2] = [
        ("nem-usd-5", "nem-usd-0", 7),
        ("nem-usd-0", "nem-usd-4", 900_001),
    ];
    const S3: [(&str, &str, i64); 3] = [
        ("nem-usd-5", "nem-usd-0", 10),
        ("nem-usd-0", "nem-usd-legs-3", 5),
        ("nem-usd-legs-3", "nem-usd-5", 4),
    ];
    const S4: [(&str, &str, i64); 2] = [
        ("nem-usd-legs-3", "nem-usd-legs-5", 9),
        ("nem-usd-legs-5", "nem-usd-0", 3),
    ];

    struct Sets {
        history: Vec<Entry>,
        finals: HashMap<String, Option<FinalTransfer>>,
        moves: Vec<Move>,
    }

    fn sets() -> Sets {
        let (mut history, mut finals) = funding();
        let mut moves = funding_moves(&finals);
        step(
            &mut history,
            10,
            Phase::Ok,
            legs_op("s1", &S1, "v1.0.1", None),
        );
        finals.insert(
            "s1".into(),
            legs_final(TransferStatus::Completed, &S1, None),
        );
        step(
            &mut history,
            12,
            Phase::Fail,
            legs_op("s2", &S2, "INSUFFICIENT_FUNDS", Some(1)),
        );
        finals.insert(
            "s2".into(),
            legs_final(TransferStatus::Rejected, &S2, Some(1)),
        );
        step(
            &mut history,
            14,
            Phase::Unknown,
            legs_op("s3", &S3, "UNAVAILABLE: x", None),
        );
        finals.insert(
            "s3".into(),
            legs_final(TransferStatus::Completed, &S3, None),
        );
        step(
            &mut history,
            16,
            Phase::Unknown,
            legs_op("s4", &S4, "UNAVAILABLE: x", None),
        );
        finals.insert("s4".into(), None);
        step(
            &mut history,
            18,
            Phase::Fail,
            legs_op("s5", &S4, "LEGS_SPAN_PARTITIONS", None),
        );
        finals.insert("s5".into(), None);
        for (id, legs) in [("s1", &S1[..]), ("s3", &S3[..])] {
            for (from, to, amount) in legs {
                moves.push((id.into(), (*from).into(), (*to).into(), *amount));
            }
        }
        Sets {
            history,
            finals,
            moves,
        }
    }

    /// Checks `sets` with the read history and pushes derived from `moves` (and quiescent
    /// balances from `balances`).
    fn check_sets(
        sets: &Sets,
        finals: &HashMap<String, Option<FinalTransfer>>,
        moves: &[Move],
        balances: &BTreeMap<String, i64>,
    ) -> Report {
        let read_history = read_history_of(moves);
        let mut history = sets.history.clone();
        history.extend(pushes_of(&read_history));
        history.push(entry(
            30,
            Phase::Ok,
            Op::Read {
                balances: balances.clone().into_iter().collect(),
                quiescent: true,
            },
        ));
        let mut report = Report::default();
        check(
            &history,
            finals,
            balances,
            &read_history,
            &nothing_held(),
            &mut report,
        );
        report
    }

    fn contains(report: &Report, text: &str) -> bool {
        report.anomalies.iter().any(|a| a.contains(text))
    }

    #[test]
    fn a_clean_history_with_sets_passes() {
        let sets = sets();
        let report = check_sets(&sets, &sets.finals, &sets.moves, &balances_of(&sets.moves));
        assert!(report.ok(), "{:?}", report.anomalies);
        assert_eq!(
            (
                report.legs_attempted,
                report.legs_acknowledged,
                report.legs_refused,
                report.legs_unknown,
                report.legs_unknown_applied,
            ),
            (5, 1, 2, 2, 1)
        );
        assert_eq!(report.legs_resubmitted, 2);
        assert_eq!(
            (
                report.legs_completed,
                report.legs_rejected,
                report.legs_moved
            ),
            (2, 1, 5)
        );
    }

    #[test]
    fn a_set_applied_in_part_is_caught() {
        let sets = sets();
        // s1's second leg missing from the balances only: the fold catches it.
        let mut partial = sets.moves.clone();
        let leg = partial
            .iter()
            .position(|m| m.0 == "s1" && m.1 == "nem-usd-4")
            .unwrap();
        partial.remove(leg);
        let report = check_sets(&sets, &sets.finals, &sets.moves, &balances_of(&partial));
        assert!(
            contains(&report, "fold of completed"),
            "{:?}",
            report.anomalies
        );
        // Missing from the read node's history and the pushes too: all-or-none is named.
        let report = check_sets(&sets, &sets.finals, &partial, &balances_of(&partial));
        assert!(
            contains(
                &report,
                "all-or-none: set s1 (COMPLETED, 2 legs) shows 2 of its 4"
            ),
            "{:?}",
            report.anomalies
        );
        assert!(
            contains(&report, "nem-usd-4: pushed 1 of the 2 legs of s1"),
            "{:?}",
            report.anomalies
        );
        assert!(
            contains(
                &report,
                "nem-usd-4: s1 moved [50000], its legs [50000, -120000]"
            ),
            "{:?}",
            report.anomalies
        );
        // One leg applied twice on the read node: caught as well.
        let mut twice = sets.moves.clone();
        twice.push(partial[leg - 1].clone());
        let report = check_sets(&sets, &sets.finals, &twice, &balances_of(&sets.moves));
        assert!(
            contains(&report, "recorded twice"),
            "{:?}",
            report.anomalies
        );
        assert!(
            contains(&report, "all-or-none: set s1"),
            "{:?}",
            report.anomalies
        );
    }

    #[test]
    fn an_acknowledged_set_missing_is_caught() {
        let sets = sets();
        // Not found, or REJECTED: lost, and the money it moved has no record.
        let without_s1: Vec<Move> = sets.moves.iter().filter(|m| m.0 != "s1").cloned().collect();
        for lost in [None, legs_final(TransferStatus::Rejected, &S1, Some(0))] {
            let mut finals = sets.finals.clone();
            finals.insert("s1".into(), lost);
            let report = check_sets(&sets, &finals, &without_s1, &balances_of(&without_s1));
            assert!(
                contains(&report, "set s1: acknowledged but lost"),
                "{:?}",
                report.anomalies
            );
        }
        // COMPLETED with another set of legs.
        let mut finals = sets.finals.clone();
        finals.insert(
            "s1".into(),
            legs_final(TransferStatus::Completed, &S1[..1], None),
        );
        let report = check_sets(&sets, &finals, &sets.moves, &balances_of(&sets.moves));
        assert!(
            contains(&report, "set s1: COMPLETED with other legs"),
            "{:?}",
            report.anomalies
        );
    }

    #[test]
    fn a_refused_set_that_moved_money_is_caught() {
        let sets = sets();
        let mut moved = sets.moves.clone();
        for (from, to, amount) in S2 {
            moved.push(("s2".into(), from.into(), to.into(), amount));
        }
        // Recorded COMPLETED after the client was told INSUFFICIENT_FUNDS.
        let mut finals = sets.finals.clone();
        finals.insert(
            "s2".into(),
            legs_final(TransferStatus::Completed, &S2, None),
        );
        let report = check_sets(&sets, &finals, &moved, &balances_of(&moved));
        assert!(
            contains(
                &report,
                "set s2: refused INSUFFICIENT_FUNDS (leg Some(1)) to the client but COMPLETED"
            ),
            "{:?}",
            report.anomalies
        );
        // Recorded REJECTED, yet its legs moved money on the read node and in the balances.
        let report = check_sets(&sets, &sets.finals, &moved, &balances_of(&moved));
        assert!(
            contains(
                &report,
                "all-or-none: set s2 is not COMPLETED but shows 4 rows"
            ),
            "{:?}",
            report.anomalies
        );
        assert!(
            contains(&report, "fold of completed"),
            "{:?}",
            report.anomalies
        );
        assert!(
            contains(&report, "s2, which is not COMPLETED"),
            "{:?}",
            report.anomalies
        );
        // A recorded refusal that left no record, or names another leg.
        let mut finals = sets.finals.clone();
        finals.insert("s2".into(), None);
        let report = check_sets(&sets, &finals, &sets.moves, &balances_of(&sets.moves));
        assert!(
            contains(
                &report,
                "set s2: refused INSUFFICIENT_FUNDS but no REJECTED record"
            ),
            "{:?}",
            report.anomalies
        );
        finals.insert(
            "s2".into(),
            legs_final(TransferStatus::Rejected, &S2, Some(0)),
        );
        let report = check_sets(&sets, &finals, &sets.moves, &balances_of(&sets.moves));
        assert!(
            contains(
                &report,
                "set s2: refused INSUFFICIENT_FUNDS at leg Some(1), recorded REJECTED at leg Some(0)"
            ),
            "{:?}",
            report.anomalies
        );
        // A REJECTED record of other legs than those sent (here: the legs reversed).
        let reversed: Vec<(&str, &str, i64)> = S2.iter().rev().copied().collect();
        finals.insert(
            "s2".into(),
            legs_final(TransferStatus::Rejected, &reversed, Some(1)),
        );
        let report = check_sets(&sets, &finals, &sets.moves, &balances_of(&sets.moves));
        assert!(
            contains(&report, "set s2: REJECTED with other legs"),
            "{:?}",
            report.anomalies
        );
    }

    /// The read node's history from rows `(id, account, delta)` in the order applied.
    fn history_of_rows(rows: &[(String, String, i64)]) -> BTreeMap<String, Vec<HistoryRow>> {
        let mut all: BTreeMap<String, Vec<HistoryRow>> = accounts()
            .into_iter()
            .map(|(id, _, _)| (id, Vec::new()))
            .collect();
        for (id, account, delta) in rows {
            let rows = all.get_mut(account).unwrap();
            let before = rows.last().map_or(0, |r| r.balance_after_minor);
            rows.push(HistoryRow {
                sequence: rows.len() as u64 + 1,
                transaction_id: id.clone(),
                delta_minor: *delta,
                balance_after_minor: before + delta,
            });
        }
        all
    }

    #[test]
    fn a_set_across_partitions_shows_each_accounts_net_and_refunds_in_pairs() {
        // usd-0 (partition 4) pays usd-1 (partition 0), which passes some on to usd-2
        // (partition 5): each part moves its accounts' net, one row each.
        const X: [(&str, &str, i64); 2] = [
            ("nem-usd-0", "nem-usd-1", 500),
            ("nem-usd-1", "nem-usd-2", 200),
        ];
        let owned: Vec<(String, String, i64)> = X
            .iter()
            .map(|(from, to, amount)| ((*from).into(), (*to).into(), *amount))
            .collect();
        assert!(spans_partitions(&owned));
        let (mut history, mut finals) = funding();
        let mut rows: Vec<(String, String, i64)> = Vec::new();
        for (id, from, to, amount) in funding_moves(&finals) {
            rows.push((id.clone(), from, -amount));
            rows.push((id, to, amount));
        }
        step(
            &mut history,
            10,
            Phase::Ok,
            legs_op("x1", &X, "v1.4.1.0.2", None),
        );
        finals.insert("x1".into(), legs_final(TransferStatus::Completed, &X, None));
        // x2: the same legs, refused by a part after usd-0's part took its net debit.
        step(
            &mut history,
            12,
            Phase::Fail,
            legs_op("x2", &X, "INSUFFICIENT_FUNDS", Some(1)),
        );
        finals.insert(
            "x2".into(),
            legs_final(TransferStatus::Rejected, &X, Some(1)),
        );
        let net = [("nem-usd-0", -500), ("nem-usd-1", 300), ("nem-usd-2", 200)];
        let x1: Vec<(String, String, i64)> = net
            .iter()
            .map(|(account, delta)| ("x1".into(), (*account).into(), *delta))
            .collect();
        let x2 = [
            ("x2".to_owned(), "nem-usd-0".to_owned(), -500),
            ("x2".to_owned(), "nem-usd-0".to_owned(), 500),
        ];
        let run_rows = |rows: &[(String, String, i64)]| {
            let read_history = history_of_rows(rows);
            let balances: BTreeMap<String, i64> = read_history
                .iter()
                .map(|(account, rows)| {
                    (
                        account.clone(),
                        rows.last().map_or(0, |r| r.balance_after_minor),
                    )
                })
                .collect();
            let mut all = history.clone();
            all.extend(pushes_of(&read_history));
            all.push(entry(
                30,
                Phase::Ok,
                Op::Read {
                    balances: balances.clone().into_iter().collect(),
                    quiescent: true,
                },
            ));
            let mut report = Report::default();
            check(
                &all,
                &finals,
                &balances,
                &read_history,
                &nothing_held(),
                &mut report,
            );
            report
        };
        let clean: Vec<_> = rows.iter().chain(&x1).chain(&x2).cloned().collect();
        let report = run_rows(&clean);
        assert!(report.ok(), "{:?}", report.anomalies);
        // The refused set's debit without its refund: caught.
        let unrefunded: Vec<_> = rows.iter().chain(&x1).chain(&x2[..1]).cloned().collect();
        let report = run_rows(&unrefunded);
        assert!(
            contains(&report, "x2 debited, never refunded"),
            "{:?}",
            report.anomalies
        );
        // The completed set shown leg by leg on usd-1 (two rows where one part moves one
        // net): caught.
        let mut per_leg: Vec<_> = rows.iter().chain(&x2).cloned().collect();
        per_leg.extend([
            ("x1".to_owned(), "nem-usd-0".to_owned(), -500),
            ("x1".to_owned(), "nem-usd-1".to_owned(), 500),
            ("x1".to_owned(), "nem-usd-1".to_owned(), -200),
            ("x1".to_owned(), "nem-usd-2".to_owned(), 200),
        ]);
        let report = run_rows(&per_leg);
        assert!(
            contains(
                &report,
                "all-or-none: set x1 (COMPLETED, 2 legs) shows 4 of its 3 rows"
            ),
            "{:?}",
            report.anomalies
        );
    }

    #[test]
    fn a_set_moving_money_while_frozen_is_caught() {
        let sets = sets();
        let mut history = sets.history.clone();
        // nem-usd-5 (in s1 and s3) frozen from t=5 to t=100; s1 was acknowledged at t=11.
        let change = |change| Op::Account {
            change,
            account_id: "nem-usd-5".into(),
            detail: String::new(),
        };
        history.insert(0, entry(3, Phase::Invoke, change(AccountChange::Freeze)));
        history.insert(1, entry(5, Phase::Ok, change(AccountChange::Freeze)));
        history.push(entry(100, Phase::Invoke, change(AccountChange::Unfreeze)));
        history.push(entry(102, Phase::Ok, change(AccountChange::Unfreeze)));
        // A set refused ACCOUNT_FROZEN later, when nothing was frozen: also caught.
        let s6 = [
            ("nem-usd-legs-3", "nem-usd-legs-5", 1),
            ("nem-usd-legs-5", "nem-usd-5", 1),
        ];
        step(
            &mut history,
            200,
            Phase::Fail,
            legs_op("s6", &s6, "ACCOUNT_FROZEN", Some(1)),
        );
        let mut finals = sets.finals.clone();
        finals.insert(
            "s6".into(),
            legs_final(TransferStatus::Rejected, &s6, Some(1)),
        );
        let frozen = Sets {
            history,
            finals: finals.clone(),
            moves: sets.moves.clone(),
        };
        let report = check_sets(&frozen, &finals, &sets.moves, &balances_of(&sets.moves));
        assert!(
            contains(
                &report,
                "set s1 acknowledged in t=10..11ms while [\"nem-usd-5\"] was frozen"
            ),
            "{:?}",
            report.anomalies
        );
        assert!(
            contains(&report, "set s6 refused ACCOUNT_FROZEN in t=200..201ms"),
            "{:?}",
            report.anomalies
        );
        assert_eq!(report.anomalies_total, 2, "{:?}", report.anomalies);
    }
}
