//! The replicated state and its two pure functions: `decide` (command → decision) and
//! `evolve` (event → new state).
//!
//! Accounts live in a flat table of fixed-size records (`accounts.rs`: pages of 32-byte
//! slots found by the BLAKE3 hash of the id, ids inline in the page, no hash seed, so every
//! replica lays them out alike). Transfer records are keyed by transaction id as `u128` in
//! ordered maps. Both are persistent: cloning a ledger for a snapshot costs O(1) on the store
//! thread (pages and B-tree nodes are shared), and a page or node is copied only when the live
//! ledger writes to it while the snapshot still holds it. Listings and snapshots sort by id
//! where order is visible.
//!
//! The state digest is maintained as the state changes (see [`Ledger::digest`]), so asking
//! for it costs O(currencies), not a walk of every account and transfer.
//!
//! Records of finished transfers and credits need not stay in memory: a write node keeps
//! every record on disk, runs its ledgers with [`Ledger::keep_only_in_flight`], and hands the
//! records of the ids it is about to decide to [`decide_with`] (see [`crate::stored`]).
//! Tests and tools keep everything in memory (the default).

use std::collections::BTreeMap;

use imbl::{OrdMap, OrdSet};

mod accounts;
mod digest;
mod snapshot;

pub use accounts::AccountRef;
pub use snapshot::{Format2, Format4, WithAccountAnnotations, WithLiveLegs};

use accounts::{AccountTable, IdHash};

use digest::{
    RecordSum, account_annotations_hash, account_hash, credit_hash, legs_hash, settings_hash,
    transfer_hash,
};

use crate::annotations::Annotations;
use crate::domain::legs::{LegsCommand, LegsDecision, LegsPart, LegsRecord, LegsStatus};
use crate::domain::{
    Account, AccountChange, AccountRefusal, AccountSettings, AccountStatus, Command, Conflict,
    CreditOutcome, CreditRecord, Decision, EntryMeta, Event, HOLD_TIMEOUT_MS_MAX,
    HOLDS_PENDING_MAX, Hold, HoldRefusal, HoldState, Malformed, Outcome, RejectReason,
    TransferCommand, TransferRecord, TransferStatus,
};
use crate::ids::validate_account_id;
use crate::money::Currency;
use crate::stored::{NothingStored, Record, Stored, legs_record_after, record_after};

/// One partition's state: its accounts, every transfer it decided as the source, every credit
/// it decided as the target, and the money that left it for other partitions.
///
/// Conservation per partition: for every currency, the sum of balances plus `outflow` is
/// zero. Across partitions, the sum of outflows is the money in flight (debited on a source,
/// not yet credited or refunded): zero once every cross-partition transfer has settled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Open accounts, by id.
    accounts: AccountTable,
    /// Transfers decided here as the source and held in memory (every in-flight one, and
    /// finished ones unless only in-flight ones are kept), by transaction id
    /// ([`uuid::Uuid::as_u128`]: the UUID's byte order, compared in one instruction).
    transfers: OrdMap<u128, TransferRecord>,
    /// Credits decided here as the target and held in memory, by transaction id.
    credits: OrdMap<u128, CreditRecord>,
    /// Multi-leg transfers decided here and held in memory (every live one: a part prepared
    /// across partitions, or decided on the home; finished ones only while finished records
    /// are kept), by transaction id. Counted as transfers.
    legs: OrdMap<u128, LegsRecord>,
    /// The ids of the live multi-leg records (see [`LegsStatus::is_live`]).
    legs_live: OrdSet<u128>,
    /// Transfers and credits ever decided here, held in memory or not.
    transfers_count: u64,
    credits_count: u64,
    /// Whether finished records are held in memory (see [`Ledger::keep_only_in_flight`]).
    keep: KeepFinished,
    outflow: BTreeMap<Currency, i128>,
    in_flight: OrdSet<u128>,
    /// Sum of balances per currency, kept up to date by every balance change (no zero
    /// entries), so conservation can be checked after every entry in O(currencies).
    balance_totals: BTreeMap<Currency, i128>,
    /// The sum of every account's, transfer's and credit's record hash, kept up to date by
    /// every change to a record: what makes [`Ledger::digest`] O(currencies).
    records: RecordSum,
    /// Money reserved by pending holds, per account (accounts without any are absent): an
    /// account's available balance is its balance minus this. Follows from the pending
    /// holds' records, so it is not hashed separately.
    held: OrdMap<String, i128>,
    /// Pending holds by (expiry, transaction id): the ones due first come first. Its length
    /// is the number of pending holds.
    expiries: OrdSet<(u64, u128)>,
    /// Lifecycle settings of the accounts whose settings are not the default (frozen,
    /// closed, or with an overdraft limit), by account id; hashed as records of their own.
    settings: OrdMap<String, AccountSettings>,
    /// Cross-partition transfers awaiting a settle, per debited account, and multi-leg parts
    /// prepared and not yet resolved, per account they move money of (by the account id's
    /// hash; accounts without any are absent): a refund or a credit may still come to the
    /// account, so it cannot close. Follows from the live records, so it is not hashed.
    debits_in_flight: OrdMap<u128, u32>,
    /// The accounts opened with a reference or metadata: by account id, the hash of that
    /// record ([`digest::account_annotations_hash`]), which is all an open of an existing
    /// account compares. The annotations themselves are on the write node's disk and in the
    /// account's `AccountOpened` event, not in memory.
    account_annotations: OrdMap<String, [u8; 32]>,
}

impl Ledger {
    /// An empty ledger: no accounts, no transfers.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// The account with this id, if open.
    pub fn account(&self, account_id: &str) -> Option<AccountRef<'_>> {
        self.accounts.get(IdHash::of(account_id), account_id)
    }

    /// The record of this transaction id, if it was decided here as the source and is held
    /// in memory (in flight, or finished on a ledger that keeps finished records).
    pub fn transfer(&self, transaction_id: &uuid::Uuid) -> Option<&TransferRecord> {
        self.transfers.get(&transaction_id.as_u128())
    }

    /// The amount pending holds reserve on this account (0 if none).
    pub fn held_minor(&self, account_id: &str) -> i128 {
        self.held.get(account_id).copied().unwrap_or(0)
    }

    /// What the account can spend: its balance minus what pending holds reserve.
    pub fn available_minor(&self, account: AccountRef) -> i128 {
        account.balance_minor - self.held_minor(account.account_id)
    }

    /// The account's lifecycle settings (the default for an account that never changed, and
    /// for an id that is not open).
    pub fn account_settings(&self, account_id: &str) -> AccountSettings {
        if self.settings.is_empty() {
            return AccountSettings::default();
        }
        self.settings.get(account_id).copied().unwrap_or_default()
    }

    /// The open account with this id, with its settings, as an owned value.
    pub fn account_view(&self, account_id: &str) -> Option<Account> {
        let account = self.account(account_id)?;
        Some(Account {
            settings: self.account_settings(account_id),
            ..account.to_account()
        })
    }

    /// Whether the account was opened with exactly these annotations (`None`: without any).
    /// The annotations themselves are not in memory, only the hash of each account's.
    pub fn account_has_annotations(
        &self,
        account_id: &str,
        annotations: Option<&Annotations>,
    ) -> bool {
        self.account_annotations.get(account_id)
            == annotations
                .map(|annotations| account_annotations_hash(account_id, annotations))
                .as_ref()
    }

    /// Number of accounts opened with a reference or metadata.
    pub fn annotated_accounts_count(&self) -> usize {
        self.account_annotations.len()
    }

    /// Number of accounts whose settings differ from the default.
    pub fn changed_accounts_count(&self) -> usize {
        self.settings.len()
    }

    /// Whether `account` can pay `amount_minor` out of what it has: its available balance
    /// plus its overdraft limit (an account with `allow_negative_balance` always can).
    fn covers(&self, account: AccountRef, amount_minor: i64) -> bool {
        self.covers_minor(account, i128::from(amount_minor))
    }

    /// [`Ledger::covers`] for an amount that may exceed one transfer's (a multi-leg
    /// transfer's net debit of an account).
    fn covers_minor(&self, account: AccountRef, amount_minor: i128) -> bool {
        account.allow_negative_balance
            || self.available_minor(account)
                + i128::from(
                    self.account_settings(account.account_id)
                        .overdraft_limit_minor,
                )
                >= amount_minor
    }

    /// Number of pending holds.
    pub fn pending_holds_count(&self) -> usize {
        self.expiries.len()
    }

    /// The earliest expiry of a pending hold, if any (leader-stamped milliseconds).
    pub fn next_hold_expiry(&self) -> Option<u64> {
        self.expiries
            .get_min()
            .map(|(expires_at_ms, _)| *expires_at_ms)
    }

    /// Pending holds whose expiry is at or before `now_ms`, the earliest first, at most
    /// `max`: what the leader proposes to expire. O(log n + max).
    pub fn due_holds(&self, now_ms: u64, max: usize) -> impl Iterator<Item = uuid::Uuid> + '_ {
        self.expiries
            .range(..=(now_ms, u128::MAX))
            .take(max)
            .map(|(_, id)| uuid::Uuid::from_u128(*id))
    }

    /// Pending holds, the earliest expiry first.
    pub fn pending_holds(&self) -> impl Iterator<Item = &TransferRecord> {
        self.expiries.iter().map(|(_, id)| &self.transfers[id])
    }

    /// Number of open accounts.
    pub fn accounts_count(&self) -> usize {
        self.accounts.len()
    }

    /// Number of transfers ever decided here as the source (completed, rejected, in flight),
    /// held in memory or not.
    pub fn transfers_count(&self) -> u64 {
        self.transfers_count
    }

    /// Number of credits ever decided here as the target, held in memory or not.
    pub fn credits_count(&self) -> u64 {
        self.credits_count
    }

    /// Whether a record of this transaction id is held in memory (a lookup elsewhere is then
    /// not needed to decide a command of the id).
    pub fn holds_record(&self, transaction_id: u128) -> bool {
        self.transfers.contains_key(&transaction_id)
            || self.credits.contains_key(&transaction_id)
            || self.legs.contains_key(&transaction_id)
    }

    /// Number of transfer, credit and multi-leg records held in memory.
    pub fn records_in_memory(&self) -> usize {
        self.transfers.len() + self.credits.len() + self.legs.len()
    }

    /// The multi-leg transfer decided here under this id, if held in memory (every live one
    /// is).
    pub fn legs_record(&self, transaction_id: &uuid::Uuid) -> Option<&LegsRecord> {
        self.legs.get(&transaction_id.as_u128())
    }

    /// The live multi-leg records (parts prepared, homes decided and not finished), by id.
    pub fn live_legs(&self) -> impl Iterator<Item = &LegsRecord> {
        self.legs_live.iter().map(|id| &self.legs[id])
    }

    /// The live multi-leg records after `cursor` in id order, then, wrapping around, those up
    /// to and including it: where a home's recovery pass resumes (as
    /// [`Ledger::in_flight_from`] does for transfers).
    pub fn live_legs_from(&self, cursor: Option<uuid::Uuid>) -> impl Iterator<Item = &LegsRecord> {
        wrapping_from(&self.legs_live, cursor).map(|id| &self.legs[id])
    }

    /// Number of live multi-leg records.
    pub fn live_legs_count(&self) -> usize {
        self.legs_live.len()
    }

    /// From now on, holds in memory only the records of transfers in flight (a settle needs
    /// them) and drops the finished ones it holds: the edge keeps every record on disk and
    /// hands them back to [`decide_with`]. Counts, sums and the digest do not change, and
    /// neither does equality (a ledger is the same state whatever it holds in memory).
    /// O(records in memory), once; then each finished record costs its hash and its count.
    pub fn keep_only_in_flight(&mut self) {
        self.keep = KeepFinished(false);
        self.evict_all_finished();
    }

    /// Whether finished records are held in memory (the default) or only in-flight ones.
    pub fn keeps_finished(&self) -> bool {
        self.keep.0
    }

    /// Drops every finished record from memory, keeping live ones (in-flight transfers,
    /// pending holds, holds being captured) and the mode. O(records in memory).
    pub fn evict_all_finished(&mut self) {
        let live = self
            .in_flight
            .iter()
            .chain(self.expiries.iter().map(|(_, id)| id));
        self.transfers = live.map(|id| (*id, self.transfers[id].clone())).collect();
        self.credits.clear();
        self.legs = self
            .legs_live
            .iter()
            .map(|id| (*id, self.legs[id].clone()))
            .collect();
    }

    /// The credit this (target) partition decided for a transaction id, if held in memory.
    pub fn credit(&self, transaction_id: &uuid::Uuid) -> Option<&CreditRecord> {
        self.credits.get(&transaction_id.as_u128())
    }

    /// Cross-partition transfers debited here and not yet settled (holds being captured
    /// included: see [`TransferRecord::credit_command`]), by transaction id.
    pub fn in_flight(&self) -> impl Iterator<Item = &TransferRecord> {
        self.in_flight.iter().map(|id| &self.transfers[id])
    }

    /// The in-flight transfers after `cursor` in id order, then, wrapping around, those up to
    /// and including it: where a recovery pass resumes (`cursor` is the last id the previous
    /// pass drove; it may have settled meanwhile). Passes that each take the first `n` and
    /// resume after the last one reach every in-flight transfer within `ceil(count / n)`
    /// passes, however many never finish. O(log n) to start, whatever the cursor.
    pub fn in_flight_from(
        &self,
        cursor: Option<uuid::Uuid>,
    ) -> impl Iterator<Item = &TransferRecord> {
        wrapping_from(&self.in_flight, cursor).map(|id| &self.transfers[id])
    }

    /// Number of in-flight cross-partition transfers.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Money that left this partition for others (debits out, minus credits in, minus
    /// refunds), per currency. `totals_by_currency() + outflow_by_currency() == 0`.
    pub fn outflow_by_currency(&self) -> &BTreeMap<Currency, i128> {
        &self.outflow
    }

    /// The first currency whose balances and outflow do not sum to zero (with that sum), or
    /// `None` when the partition conserves money. O(currencies): it uses the running totals
    /// that every balance change updates; `totals_by_currency` recomputes them from scratch.
    pub fn imbalance(&self) -> Option<(Currency, i128)> {
        self.conservation_by_currency().find(|(_, sum)| *sum != 0)
    }

    /// Per currency with any balance or outflow: the sum of balances plus outflow, which
    /// conservation says is zero. O(currencies), from the running totals (for a gauge).
    /// A currency present in both maps appears twice, with the same sum.
    pub fn conservation_by_currency(&self) -> impl Iterator<Item = (Currency, i128)> + '_ {
        let currencies = self.balance_totals.keys().chain(self.outflow.keys());
        currencies.map(|currency| {
            let total = self.balance_totals.get(currency).copied().unwrap_or(0);
            (
                *currency,
                total + self.outflow.get(currency).copied().unwrap_or(0),
            )
        })
    }

    /// All accounts, sorted by account id (byte order). O(n log n): for audits and snapshot
    /// writers, never the store thread.
    pub fn accounts(&self) -> impl Iterator<Item = AccountRef<'_>> {
        let mut accounts: Vec<AccountRef> = self.accounts.iter().collect();
        accounts.sort_unstable_by(|a, b| a.account_id.cmp(b.account_id));
        accounts.into_iter()
    }

    /// The transfer records held in memory, sorted by transaction id (byte order of the UUID).
    pub fn transfers(&self) -> impl Iterator<Item = &TransferRecord> {
        self.transfers.values()
    }

    /// The credit records held in memory, sorted by transaction id.
    pub fn credits(&self) -> impl Iterator<Item = &CreditRecord> {
        self.credits.values()
    }

    /// Sum of balances per currency code. Sorted by code. With one partition it is always
    /// zero; with several, it is minus this partition's outflow.
    ///
    /// Every currency that has at least one account appears, so a caller can tell
    /// "balanced" from "no accounts". Computed from the balances themselves (not a
    /// separately maintained counter) so it really checks conservation of money.
    pub fn totals_by_currency(&self) -> BTreeMap<Currency, i128> {
        let mut totals = BTreeMap::new();
        for account in self.accounts.iter() {
            let total: &mut i128 = totals.entry(account.currency).or_default();
            *total = total
                .checked_add(account.balance_minor)
                .expect("currency total overflows i128");
        }
        totals
    }

    /// Opens an account; `false` (changing nothing) if one with its id is open.
    fn insert_account(&mut self, account: AccountRef) -> bool {
        let opened = self
            .accounts
            .insert(IdHash::of(account.account_id), account);
        if opened {
            self.records.add(&account_hash(account));
        }
        opened
    }

    fn insert_transfer(&mut self, record: TransferRecord) -> Option<TransferRecord> {
        self.records.add(&transfer_hash(&record));
        let id = record.transfer.transaction_id.as_u128();
        let previous = if self.keep.0 || record.status.is_live() {
            self.transfers.insert(id, record)
        } else {
            // Finished, held on disk only: what leaves memory is the in-flight version, if
            // this finishes one.
            self.transfers.remove(&id)
        };
        match &previous {
            Some(previous) => self.records.sub(&transfer_hash(previous)),
            None => self.transfers_count += 1,
        }
        previous
    }

    /// Records a multi-leg transfer, or its next state (`evolve` checks which); returns the
    /// record it replaces.
    fn insert_legs(&mut self, record: LegsRecord) -> Option<LegsRecord> {
        self.records.add(&legs_hash(&record));
        let id = record.command.transaction_id.as_u128();
        let previous = if record.status.is_live() {
            self.legs_live.insert(id);
            self.legs.insert(id, record)
        } else {
            self.legs_live.remove(&id);
            if self.keep.0 {
                self.legs.insert(id, record)
            } else {
                self.legs.remove(&id)
            }
        };
        match &previous {
            Some(previous) => self.records.sub(&legs_hash(previous)),
            None => self.transfers_count += 1,
        }
        previous
    }

    fn insert_credit(&mut self, record: CreditRecord) -> Option<CreditRecord> {
        self.records.add(&credit_hash(&record));
        let previous = if self.keep.0 {
            self.credits
                .insert(record.transfer.transaction_id.as_u128(), record)
        } else {
            None
        };
        match &previous {
            Some(previous) => self.records.sub(&credit_hash(previous)),
            None => self.credits_count += 1,
        }
        previous
    }

    /// decide then evolve; returns the event applied (if any) and the command's outcome. For
    /// a ledger that holds every record in memory (the default).
    pub fn execute(&mut self, command: &Command, meta: EntryMeta) -> (Option<Event>, Outcome) {
        self.execute_with(&NothingStored, command, meta)
    }

    /// [`Ledger::execute`] for a ledger whose finished records are looked up in `stored`.
    pub fn execute_with(
        &mut self,
        stored: &impl Stored,
        command: &Command,
        meta: EntryMeta,
    ) -> (Option<Event>, Outcome) {
        match decide_with(self, stored, command, meta) {
            Decision::Reply(outcome) => (None, outcome),
            Decision::Apply(event) => {
                let outcome = Outcome::of_new(&event).unwrap_or_else(|| self.outcome_of(&event));
                evolve(self, &event);
                (Some(event), outcome)
            }
        }
    }

    /// The outcome an event about to be applied that changes a record answers with: the
    /// record (or, for an account change, the account) as it leaves it (computed before
    /// applying it: a ledger that keeps only live records in memory no longer holds a
    /// finished one after).
    fn outcome_of(&self, event: &Event) -> Outcome {
        if let Event::AccountChanged {
            account_id, change, ..
        } = event
        {
            let account = self
                .account_view(account_id)
                .expect("decide changes open accounts");
            let settings = account.settings.after(*change);
            return Outcome::Account(Account {
                settings,
                ..account
            });
        }
        let transaction_id = event.transaction_id();
        if let Event::LegsResolved { .. } | Event::LegsFinished { .. } = event {
            let live = transaction_id
                .and_then(|transaction_id| self.legs_record(&transaction_id))
                .expect("decide changes only live records, which are in memory");
            return Outcome::Legs(legs_record_after(live, event).expect("a step of a live set"));
        }
        let live = transaction_id
            .and_then(|transaction_id| self.transfer(&transaction_id))
            .expect("decide changes only live records, which are in memory");
        Outcome::Transfer(record_after(live, event).expect("an event that changes a record"))
    }
}

/// Whether a ledger holds finished records in memory. Not part of the state: two ledgers
/// that differ only in it are equal (same accounts, records, sums), so it compares equal
/// always.
#[derive(Clone, Copy, Debug)]
struct KeepFinished(bool);

impl Default for KeepFinished {
    fn default() -> Self {
        KeepFinished(true)
    }
}

impl PartialEq for KeepFinished {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for KeepFinished {}

/// The ids of `set` after `cursor`, then, wrapping around, those up to and including it
/// (everything once when there is no cursor). O(log n) to start.
fn wrapping_from(set: &OrdSet<u128>, cursor: Option<uuid::Uuid>) -> impl Iterator<Item = &u128> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let (after, up_to) = match cursor {
        Some(cursor) => (
            set.range((Excluded(cursor.as_u128()), Unbounded)),
            set.range((Unbounded, Included(cursor.as_u128()))),
        ),
        // Everything, then nothing (no id sorts after the largest one).
        None => (
            set.range((Unbounded::<u128>, Unbounded)),
            set.range((Excluded(u128::MAX), Unbounded)),
        ),
    };
    after.chain(up_to)
}

/// Why `transfer` must be rejected in `state`, checked in the documented order, or `None`
/// if it can complete. Shared by `decide` (to choose) and `evolve` (to verify the log).
fn transfer_rejection(state: &Ledger, transfer: &TransferCommand) -> Option<RejectReason> {
    let Some(from) = state.account(&transfer.from) else {
        return Some(RejectReason::FromAccountNotFound);
    };
    let Some(to) = state.account(&transfer.to) else {
        return Some(RejectReason::ToAccountNotFound);
    };
    if let Some(reason) = sender_refusal(state, &transfer.from) {
        return Some(reason);
    }
    if let Some(reason) = receiver_refusal(state, &transfer.to) {
        return Some(reason);
    }
    if transfer.currency != from.currency || transfer.currency != to.currency {
        return Some(RejectReason::CurrencyMismatch);
    }
    if !state.covers(from, transfer.amount_minor) {
        return Some(RejectReason::InsufficientFunds);
    }
    None
}

/// Why a multi-leg transfer must be rejected in `state`, with the index of the leg at fault,
/// or `None` if every leg can move together: [`rejection_among`] with every account of the
/// set in this partition. Shared by `decide` and `evolve`.
fn legs_rejection(state: &Ledger, legs: &LegsCommand) -> Option<(u32, RejectReason)> {
    rejection_among(state, legs, |_| true)
}

/// Why one partition must refuse its part of a multi-leg transfer across partitions, with
/// the index of the leg at fault, or `None` if it can prepare: [`rejection_among`] of the
/// part's accounts (the others are their own partitions' to check). Shared by `decide` and
/// `evolve`.
fn part_rejection(
    state: &Ledger,
    legs: &LegsCommand,
    part: LegsPart,
) -> Option<(u32, RejectReason)> {
    let local: std::collections::BTreeSet<&str> = part.accounts(legs).collect();
    rejection_among(state, legs, |account_id| local.contains(account_id))
}

/// Why the accounts of a set that `is_here` names must refuse it, with the index of the leg
/// at fault. Each leg's accounts here are checked in leg order as a transfer's are (open,
/// then allowed to send and receive, then of the set's currency); then funds, once per
/// account after all its legs, the accounts in order of their first debit (the leg named is
/// that first debit).
fn rejection_among(
    state: &Ledger,
    legs: &LegsCommand,
    is_here: impl Fn(&str) -> bool,
) -> Option<(u32, RejectReason)> {
    let at = |index: usize| u32::try_from(index).expect("at most LEGS_MAX legs");
    for (index, leg) in legs.legs.iter().enumerate() {
        let (from_here, to_here) = (is_here(&leg.from), is_here(&leg.to));
        let from = from_here.then(|| state.account(&leg.from));
        let to = to_here.then(|| state.account(&leg.to));
        if from == Some(None) {
            return Some((at(index), RejectReason::FromAccountNotFound));
        }
        if to == Some(None) {
            return Some((at(index), RejectReason::ToAccountNotFound));
        }
        let refusal = from_here
            .then(|| sender_refusal(state, &leg.from))
            .flatten()
            .or_else(|| to_here.then(|| receiver_refusal(state, &leg.to)).flatten())
            .or_else(|| {
                let mismatch = [from, to]
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|account| account.currency != legs.currency);
                mismatch.then_some(RejectReason::CurrencyMismatch)
            });
        if let Some(reason) = refusal {
            return Some((at(index), reason));
        }
    }
    let net = legs.net_by_account();
    let mut checked = std::collections::BTreeSet::new();
    for (index, leg) in legs.legs.iter().enumerate() {
        if !is_here(&leg.from) || !checked.insert(leg.from.as_str()) {
            continue;
        }
        let debit = -net[leg.from.as_str()];
        let account = state.account(&leg.from).expect("checked open above");
        if debit > 0 && !state.covers_minor(account, debit) {
            return Some((at(index), RejectReason::InsufficientFunds));
        }
    }
    None
}

/// The answer a step of a multi-leg transfer across partitions gets from a partition that
/// recorded its id for something else (as a credit's refusal is: not recorded, citing the
/// original's position): a rejection for reuse, at the first leg with an account here.
fn reused_legs(legs: &LegsCommand, part: LegsPart, original_meta: EntryMeta) -> Decision {
    let local: std::collections::BTreeSet<&str> = part.accounts(legs).collect();
    let leg = legs
        .legs
        .iter()
        .position(|leg| local.contains(leg.from.as_str()) || local.contains(leg.to.as_str()))
        .unwrap_or(0);
    Decision::Reply(Outcome::Legs(LegsRecord {
        command: legs.clone(),
        status: LegsStatus::Rejected {
            leg: u32::try_from(leg).expect("at most LEGS_MAX legs"),
            reason: RejectReason::TransactionIdReused,
        },
        meta: original_meta,
    }))
}

/// The log position of whatever record `found` is.
fn found_meta(found: &Found) -> EntryMeta {
    match found {
        Found::Transfer(record) => record.meta,
        Found::Credit(record) => record.meta,
        Found::Legs(record) => record.meta,
    }
}

/// Whether a step of a multi-leg transfer across partitions is well formed: the set's shape,
/// a part of it, and a rejection (if any) naming one of its legs.
fn legs_step_shape(
    legs: &LegsCommand,
    part: LegsPart,
    decision: Option<LegsDecision>,
) -> Result<(), Malformed> {
    legs.shape().map_err(|(malformed, _)| malformed)?;
    let leg_fits = match decision {
        Some(LegsDecision::Rejected { leg, .. }) => (leg as usize) < legs.legs.len(),
        _ => true,
    };
    if !part.fits(legs) || !leg_fits {
        return Err(Malformed::InvalidLegsPart);
    }
    Ok(())
}

/// Why the account cannot send, by its status, or `None` if it can.
fn sender_refusal(state: &Ledger, account_id: &str) -> Option<RejectReason> {
    match state.account_settings(account_id).status {
        AccountStatus::Active => None,
        AccountStatus::Frozen => Some(RejectReason::FromAccountFrozen),
        AccountStatus::Closed => Some(RejectReason::FromAccountClosed),
    }
}

/// Why the account cannot receive, by its status, or `None` if it can.
fn receiver_refusal(state: &Ledger, account_id: &str) -> Option<RejectReason> {
    match state.account_settings(account_id).status {
        AccountStatus::Active => None,
        AccountStatus::Frozen => Some(RejectReason::ToAccountFrozen),
        AccountStatus::Closed => Some(RejectReason::ToAccountClosed),
    }
}

/// Why the source side of a cross-partition transfer must be rejected (the target checks
/// `to` itself), or `None` if `from` can be debited.
fn transfer_out_rejection(state: &Ledger, transfer: &TransferCommand) -> Option<RejectReason> {
    let Some(from) = state.account(&transfer.from) else {
        return Some(RejectReason::FromAccountNotFound);
    };
    if let Some(reason) = sender_refusal(state, &transfer.from) {
        return Some(reason);
    }
    if transfer.currency != from.currency {
        return Some(RejectReason::CurrencyMismatch);
    }
    if !state.covers(from, transfer.amount_minor) {
        return Some(RejectReason::InsufficientFunds);
    }
    None
}

/// Why a hold must be refused: checked as a transfer within the partition is, or as the
/// debit side of a cross-partition one (the target checks `to` on capture).
fn authorize_rejection(
    state: &Ledger,
    transfer: &TransferCommand,
    cross_partition: bool,
) -> Option<RejectReason> {
    if cross_partition {
        transfer_out_rejection(state, transfer)
    } else {
        transfer_rejection(state, transfer)
    }
}

/// The answer to a hold step for a hold that is not pending: its record when the step was
/// already taken with these parameters (`retry`), else the refusal its state calls for.
fn settled_hold_answer(record: &TransferRecord, hold: &Hold, retry: bool) -> Decision {
    let refusal = match hold.state {
        _ if retry => return Decision::Reply(Outcome::Transfer(record.clone())),
        HoldState::Pending => unreachable!("callers answer pending holds themselves"),
        HoldState::Capturing { .. } | HoldState::Captured { .. } => HoldRefusal::AlreadyCaptured,
        HoldState::CaptureRefused { .. } => HoldRefusal::CaptureRefused,
        HoldState::Voided { .. } => HoldRefusal::AlreadyVoided,
        HoldState::Expired { .. } => HoldRefusal::Expired,
        HoldState::Refused(_) => HoldRefusal::NotAuthorized,
    };
    Decision::Reply(Outcome::Hold(refusal))
}

/// Why the target partition must refuse a credit, or `None` if `to` can be credited.
fn credit_refusal(state: &Ledger, transfer: &TransferCommand) -> Option<RejectReason> {
    let Some(to) = state.account(&transfer.to) else {
        return Some(RejectReason::ToAccountNotFound);
    };
    if let Some(reason) = receiver_refusal(state, &transfer.to) {
        return Some(reason);
    }
    if transfer.currency != to.currency {
        return Some(RejectReason::CurrencyMismatch);
    }
    None
}

/// Why a pending hold cannot be captured now because of its accounts' status (the target's
/// only when it is in this partition), or `None`.
fn capture_refusal(state: &Ledger, record: &TransferRecord, hold: &Hold) -> Option<HoldRefusal> {
    let status = |account_id: &str| state.account_settings(account_id).status;
    let to_status = (!hold.cross_partition).then(|| status(&record.transfer.to));
    match (status(&record.transfer.from), to_status) {
        (AccountStatus::Frozen, _) | (_, Some(AccountStatus::Frozen)) => {
            Some(HoldRefusal::AccountFrozen)
        }
        (AccountStatus::Closed, _) | (_, Some(AccountStatus::Closed)) => {
            Some(HoldRefusal::AccountClosed)
        }
        _ => None,
    }
}

/// What an account change does to the account as it stands: `Ok(true)` if it applies,
/// `Ok(false)` if the account already reflects it (answered with the account, recording
/// nothing), or why it is refused. Shared by `decide` (to choose) and `evolve` (to verify).
fn account_change_check(
    state: &Ledger,
    account_id: &str,
    change: AccountChange,
) -> Result<bool, AccountRefusal> {
    let account = state.account(account_id).ok_or(AccountRefusal::NotFound)?;
    let settings = state.account_settings(account_id);
    if settings.status == AccountStatus::Closed {
        return match change {
            AccountChange::Close => Ok(false),
            _ => Err(AccountRefusal::Closed),
        };
    }
    match change {
        AccountChange::Close if account.balance_minor != 0 => Err(AccountRefusal::NotEmpty),
        AccountChange::Close if state.held_minor(account_id) != 0 => {
            Err(AccountRefusal::HasPendingHolds)
        }
        AccountChange::Close
            if state
                .debits_in_flight
                .contains_key(&IdHash::of(account_id).key()) =>
        {
            Err(AccountRefusal::HasTransfersInFlight)
        }
        AccountChange::SetOverdraftLimit { .. } if account.allow_negative_balance => {
            Err(AccountRefusal::UnlimitedOverdraft)
        }
        AccountChange::SetOverdraftLimit { currency, .. } if currency != account.currency => {
            Err(AccountRefusal::CurrencyMismatch)
        }
        // Never below what the account already owes: an ordinary account's available
        // balance stays at or above minus its limit (snapshots and the read node check it).
        AccountChange::SetOverdraftLimit { limit_minor, .. }
            if state.available_minor(account) + i128::from(limit_minor) < 0 =>
        {
            Err(AccountRefusal::LimitBelowDebt)
        }
        change => Ok(settings.after(change) != settings),
    }
}

/// A record found for a transaction id, in memory or stored.
enum Found<'a> {
    Transfer(&'a TransferRecord),
    Credit(&'a CreditRecord),
    Legs(&'a LegsRecord),
}

/// The record this partition holds for `transaction_id`: in memory, else stored.
fn find<'a>(state: &'a Ledger, stored: &'a impl Stored, transaction_id: u128) -> Option<Found<'a>> {
    if let Some(record) = state.transfers.get(&transaction_id) {
        return Some(Found::Transfer(record));
    }
    if let Some(record) = state.credits.get(&transaction_id) {
        return Some(Found::Credit(record));
    }
    if let Some(record) = state.legs.get(&transaction_id) {
        return Some(Found::Legs(record));
    }
    match stored.record(transaction_id)? {
        Record::Transfer(record) => Some(Found::Transfer(record)),
        Record::Credit(record) => Some(Found::Credit(record)),
        Record::Legs(record) => Some(Found::Legs(record)),
    }
}

/// The answer to a transfer whose id is already recorded here, as the source of a transfer
/// (the original record for an identical retry, a conflict otherwise) or as the target of a
/// credit (always a conflict: a transfer decided here has its source here, a credit's source
/// is elsewhere, so the two cannot be the same transfer).
fn known_transfer(found: Option<Found>, transfer: &TransferCommand) -> Option<Decision> {
    Some(match found? {
        // A hold under the id is another kind of transfer: a conflict, however alike.
        Found::Transfer(original)
            if original.transfer == *transfer && original.status.hold().is_none() =>
        {
            Decision::Reply(Outcome::Transfer(original.clone()))
        }
        Found::Transfer(_) | Found::Credit(_) | Found::Legs(_) => {
            Decision::Reply(Outcome::Conflict(Conflict::TransactionIdReused))
        }
    })
}

/// The refusal a credit gets when this partition already recorded its id for another
/// transfer, or `None`. Nothing is recorded for the refused credit, so the answer cites the
/// original's position, which keeps it identical for every retry; the source refunds.
fn reused_credit(found: Option<Found>, transfer: &TransferCommand) -> Option<Decision> {
    let original_meta = match found? {
        Found::Credit(original) if original.transfer == *transfer => {
            return Some(Decision::Reply(Outcome::Credit(original.clone())));
        }
        // Another source partition used this id for a different transfer into this one.
        Found::Credit(original) => original.meta,
        // This partition was the source of a transfer under this id.
        Found::Transfer(original) => original.meta,
        // Or decided a multi-leg transfer under it.
        Found::Legs(original) => original.meta,
    };
    Some(Decision::Reply(Outcome::Credit(CreditRecord {
        transfer: transfer.clone(),
        outcome: CreditOutcome::Refused(RejectReason::TransactionIdReused),
        meta: original_meta,
    })))
}

/// For `evolve`: an event's transfer passed [`TransferCommand::shape`] in `decide`, so a violation
/// here means the log or the code is corrupt, and a replica must stop rather than spread it.
fn assert_transfer_shape(transfer: &TransferCommand) {
    if let Err(malformed) = transfer.shape() {
        panic!(
            "transfer {} in an event is malformed ({}); decide refuses such commands",
            transfer.transaction_id,
            malformed.reason()
        );
    }
}

/// For `evolve`: a multi-leg event's command passed [`LegsCommand::shape`] in `decide` and
/// named an id not recorded (in memory) before.
fn assert_new_legs(state: &Ledger, legs: &LegsCommand) {
    let id = legs.transaction_id;
    if let Err((malformed, _)) = legs.shape() {
        panic!(
            "multi-leg transfer {id} in an event is malformed ({}); decide refuses such commands",
            malformed.reason()
        );
    }
    assert!(
        !state.holds_record(id.as_u128()),
        "a multi-leg event for known transaction id {id}"
    );
}

fn malformed(malformed: Malformed) -> Decision {
    Decision::Reply(Outcome::Malformed(malformed))
}

/// Pure validation against state; never panics, whatever the command (a committed entry must
/// not be able to stop a replica).
///
/// Transfer and TransferOut, in order: (0) shape ([`TransferCommand::shape`]) -> `Malformed`; (1) id
/// already recorded here as a source: same command -> the original record, else
/// `Conflict(TransactionIdReused)`; as a target of a credit -> `Conflict(TransactionIdReused)`;
/// (2) from unknown -> Apply(TransferRejected FromAccountNotFound); (3) to unknown (Transfer
/// only) -> ToAccountNotFound; (4) currency differs from an account's -> CurrencyMismatch; (5)
/// an ordinary `from` below the amount -> InsufficientFunds; else Apply(TransferCompleted or
/// TransferDebited).
///
/// Credit: (0) shape, and `from` must not be an account of this partition; (1) id recorded
/// here: the same credit -> the original record; another credit, or a transfer this partition
/// was the source of -> a refusal with TransactionIdReused (not recorded); (2) `to` unknown or
/// of another currency -> Apply(CreditRefused); else Apply(TransferCredited).
///
/// OpenAccount: malformed id -> `Malformed`; unknown -> Apply(AccountOpened); known with
/// identical (currency, allow_negative_balance) -> the account; else
/// Conflict(AccountExistsWithOtherParameters). Settle: unknown id -> `Malformed`; already
/// settled -> the record; else Apply(TransferSettled or TransferRefunded).
///
/// For a ledger that holds every record in memory; see [`decide_with`].
pub fn decide(state: &Ledger, command: &Command, meta: EntryMeta) -> Decision {
    decide_with(state, &NothingStored, command, meta)
}

/// [`decide`] for a ledger whose finished records are in `stored`: the edge looks up the
/// command's transaction id before deciding. The same decision as [`decide`] on a ledger
/// that holds everything, as long as `stored` holds exactly the records decided before this
/// command that memory does not: those of earlier entries, and those of the earlier
/// commands of this entry (the edge adds each as it is decided), never one decided later
/// (a follower catching up from a snapshot may store records ahead of what it applied: the
/// edge leaves out stored records created at or after the entry's index).
pub fn decide_with(
    state: &Ledger,
    stored: &impl Stored,
    command: &Command,
    meta: EntryMeta,
) -> Decision {
    let found = |transaction_id: &uuid::Uuid| find(state, stored, transaction_id.as_u128());
    match command {
        Command::OpenAccount {
            account_id,
            currency,
            allow_negative_balance,
            annotations,
        } => {
            if validate_account_id(account_id).is_err() {
                return malformed(Malformed::InvalidAccountId);
            }
            if let Some(Err(error)) = annotations.as_deref().map(Annotations::check) {
                return malformed(error.into());
            }
            match state.account(account_id) {
                None => Decision::Apply(Event::AccountOpened {
                    account_id: account_id.clone(),
                    currency: *currency,
                    allow_negative_balance: *allow_negative_balance,
                    annotations: annotations.clone(),
                }),
                Some(existing)
                    if existing.currency == *currency
                        && existing.allow_negative_balance == *allow_negative_balance
                        && state.account_has_annotations(account_id, annotations.as_deref()) =>
                {
                    Decision::Reply(Outcome::Account(
                        state.account_view(account_id).expect("open"),
                    ))
                }
                Some(_) => Decision::Reply(Outcome::Conflict(
                    Conflict::AccountExistsWithOtherParameters,
                )),
            }
        }
        Command::ChangeAccount { account_id, change } => {
            if validate_account_id(account_id).is_err() {
                return malformed(Malformed::InvalidAccountId);
            }
            if let AccountChange::SetOverdraftLimit { limit_minor, .. } = change
                && !(0..=crate::money::AMOUNT_MINOR_MAX).contains(limit_minor)
            {
                return malformed(Malformed::OverdraftLimitOutOfRange);
            }
            match account_change_check(state, account_id, *change) {
                Ok(true) => Decision::Apply(Event::AccountChanged {
                    account_id: account_id.clone(),
                    change: *change,
                    meta,
                }),
                Ok(false) => Decision::Reply(Outcome::Account(
                    state.account_view(account_id).expect("checked open"),
                )),
                Err(refusal) => Decision::Reply(Outcome::AccountRefused(refusal)),
            }
        }
        Command::Transfer(transfer) => {
            if let Err(error) = transfer.shape() {
                return malformed(error);
            }
            // Idempotency comes first: a retry must get the original answer even if the
            // accounts have changed since (e.g. funds arrived after a rejection).
            if let Some(decision) = known_transfer(found(&transfer.transaction_id), transfer) {
                return decision;
            }
            let transfer = transfer.clone();
            Decision::Apply(match transfer_rejection(state, &transfer) {
                None => Event::TransferCompleted { transfer, meta },
                Some(reason) => Event::TransferRejected {
                    transfer,
                    reason,
                    meta,
                },
            })
        }
        Command::TransferOut(transfer) => {
            if let Err(error) = transfer.shape() {
                return malformed(error);
            }
            if let Some(decision) = known_transfer(found(&transfer.transaction_id), transfer) {
                return decision;
            }
            let transfer = transfer.clone();
            Decision::Apply(match transfer_out_rejection(state, &transfer) {
                None => Event::TransferDebited { transfer, meta },
                Some(reason) => Event::TransferRejected {
                    transfer,
                    reason,
                    meta,
                },
            })
        }
        Command::Credit(transfer) => {
            if let Err(error) = transfer.shape() {
                return malformed(error);
            }
            if state.account(&transfer.from).is_some() {
                return malformed(Malformed::CreditFromLocalAccount);
            }
            if let Some(decision) = reused_credit(found(&transfer.transaction_id), transfer) {
                return decision;
            }
            let transfer = transfer.clone();
            Decision::Apply(match credit_refusal(state, &transfer) {
                None => Event::TransferCredited { transfer, meta },
                Some(reason) => Event::CreditRefused {
                    transfer,
                    reason,
                    meta,
                },
            })
        }
        Command::Settle {
            transaction_id,
            credit,
            credit_index,
        } => {
            if !state.in_flight.contains(&transaction_id.as_u128()) {
                return match found(transaction_id) {
                    Some(Found::Transfer(record)) => {
                        Decision::Reply(Outcome::Transfer(record.clone()))
                    }
                    _ => malformed(Malformed::SettleOfUnknownTransfer),
                };
            }
            Decision::Apply(match credit {
                CreditOutcome::Credited => Event::TransferSettled {
                    transaction_id: *transaction_id,
                    credit_index: *credit_index,
                    meta,
                },
                CreditOutcome::Refused(reason) => Event::TransferRefunded {
                    transaction_id: *transaction_id,
                    reason: *reason,
                    credit_index: *credit_index,
                    meta,
                },
            })
        }
        Command::Authorize {
            transfer,
            timeout_ms,
            cross_partition,
        } => {
            if let Err(error) = transfer.shape() {
                return malformed(error);
            }
            if !(1..=HOLD_TIMEOUT_MS_MAX).contains(timeout_ms) {
                return malformed(Malformed::HoldTimeoutOutOfRange);
            }
            if let Some(found) = found(&transfer.transaction_id) {
                let same = |original: &TransferRecord| {
                    original.transfer == *transfer
                        && original.status.hold().is_some_and(|hold| {
                            hold.cross_partition == *cross_partition
                                && hold.expires_at_ms
                                    == original.meta.timestamp_ms.saturating_add(*timeout_ms)
                        })
                };
                return Decision::Reply(match found {
                    Found::Transfer(original) if same(original) => {
                        Outcome::Transfer(original.clone())
                    }
                    Found::Transfer(_) | Found::Credit(_) | Found::Legs(_) => {
                        Outcome::Conflict(Conflict::TransactionIdReused)
                    }
                });
            }
            let (transfer, cross_partition) = (transfer.clone(), *cross_partition);
            let expires_at_ms = meta.timestamp_ms.saturating_add(*timeout_ms);
            match authorize_rejection(state, &transfer, cross_partition) {
                None if state.pending_holds_count() >= HOLDS_PENDING_MAX => {
                    Decision::Reply(Outcome::Hold(HoldRefusal::LimitReached))
                }
                None => Decision::Apply(Event::HoldAuthorized {
                    transfer,
                    expires_at_ms,
                    cross_partition,
                    meta,
                }),
                Some(reason) => Decision::Apply(Event::HoldRefused {
                    transfer,
                    reason,
                    expires_at_ms,
                    cross_partition,
                    meta,
                }),
            }
        }
        Command::Capture {
            transaction_id,
            from,
            amount_minor,
        } => {
            if transaction_id.is_nil() {
                return malformed(Malformed::NilTransactionId);
            }
            if amount_minor
                .is_some_and(|amount| !(1..=crate::money::AMOUNT_MINOR_MAX).contains(&amount))
            {
                return malformed(Malformed::AmountOutOfRange);
            }
            let (record, hold) = match hold_of(found(transaction_id), Some(from)) {
                Ok(found) => found,
                Err(refusal) => return Decision::Reply(Outcome::Hold(refusal)),
            };
            let requested = amount_minor.unwrap_or(record.transfer.amount_minor);
            let (transaction_id, amount_minor) = (*transaction_id, requested);
            let blocked = capture_refusal(state, record, &hold);
            match hold.state {
                HoldState::Pending if meta.timestamp_ms >= hold.expires_at_ms => {
                    Decision::Apply(Event::HoldExpired {
                        transaction_id,
                        meta,
                    })
                }
                HoldState::Pending if requested > record.transfer.amount_minor => {
                    Decision::Reply(Outcome::Hold(HoldRefusal::AmountExceedsHold))
                }
                HoldState::Pending if blocked.is_some() => {
                    Decision::Reply(Outcome::Hold(blocked.expect("the guard checked it")))
                }
                HoldState::Pending if hold.cross_partition => {
                    Decision::Apply(Event::HoldCaptureDebited {
                        transaction_id,
                        amount_minor,
                        meta,
                    })
                }
                HoldState::Pending => Decision::Apply(Event::HoldCaptured {
                    transaction_id,
                    amount_minor,
                    meta,
                }),
                HoldState::Capturing { amount_minor, .. }
                | HoldState::Captured { amount_minor, .. }
                | HoldState::CaptureRefused { amount_minor, .. } => {
                    settled_hold_answer(record, &hold, amount_minor == requested)
                }
                _ => settled_hold_answer(record, &hold, false),
            }
        }
        Command::Void {
            transaction_id,
            from,
        } => {
            if transaction_id.is_nil() {
                return malformed(Malformed::NilTransactionId);
            }
            let (record, hold) = match hold_of(found(transaction_id), Some(from)) {
                Ok(found) => found,
                Err(refusal) => return Decision::Reply(Outcome::Hold(refusal)),
            };
            let transaction_id = *transaction_id;
            match hold.state {
                HoldState::Pending if meta.timestamp_ms >= hold.expires_at_ms => {
                    Decision::Apply(Event::HoldExpired {
                        transaction_id,
                        meta,
                    })
                }
                HoldState::Pending => Decision::Apply(Event::HoldVoided {
                    transaction_id,
                    meta,
                }),
                HoldState::Voided { .. } => settled_hold_answer(record, &hold, true),
                _ => settled_hold_answer(record, &hold, false),
            }
        }
        Command::TransferLegs(legs) => {
            if let Err((error, _)) = legs.shape() {
                return malformed(error);
            }
            match found(&legs.transaction_id) {
                Some(Found::Legs(original)) if original.command == *legs => {
                    return Decision::Reply(Outcome::Legs(original.clone()));
                }
                Some(_) => {
                    return Decision::Reply(Outcome::Conflict(Conflict::TransactionIdReused));
                }
                None => {}
            }
            let legs = legs.clone();
            Decision::Apply(match legs_rejection(state, &legs) {
                None => Event::LegsCompleted { legs, meta },
                Some((leg, reason)) => Event::LegsRejected {
                    legs,
                    leg,
                    reason,
                    meta,
                },
            })
        }
        Command::PrepareLegs { legs, part } => {
            if let Err(error) = legs_step_shape(legs, *part, None) {
                return malformed(error);
            }
            match found(&legs.transaction_id) {
                Some(Found::Legs(original)) if original.command == *legs => {
                    return Decision::Reply(Outcome::Legs(original.clone()));
                }
                // The client's own partition answers it as a transfer is answered.
                Some(_) if part.is_home() => {
                    return Decision::Reply(Outcome::Conflict(Conflict::TransactionIdReused));
                }
                Some(other) => return reused_legs(legs, *part, found_meta(&other)),
                None => {}
            }
            let (legs, part) = (legs.clone(), *part);
            Decision::Apply(match part_rejection(state, &legs, part) {
                None => Event::LegsPrepared { legs, part, meta },
                Some((leg, reason)) => Event::LegsPartRefused {
                    legs,
                    part,
                    leg,
                    reason,
                    meta,
                },
            })
        }
        Command::ResolveLegs {
            legs,
            part,
            decision,
        } => {
            if let Err(error) = legs_step_shape(legs, *part, Some(*decision)) {
                return malformed(error);
            }
            let rejection = match *decision {
                LegsDecision::Rejected { leg, reason } => Some((leg, reason)),
                LegsDecision::Completed => None,
            };
            match found(&legs.transaction_id) {
                Some(Found::Legs(original)) if original.command == *legs => match original.status {
                    LegsStatus::Prepared { part: prepared } if prepared != *part => {
                        malformed(Malformed::InvalidLegsPart)
                    }
                    LegsStatus::Prepared { .. } => Decision::Apply(Event::LegsResolved {
                        legs: legs.clone(),
                        part: *part,
                        decision: *decision,
                        meta,
                    }),
                    // Resolved already, or refused (so the home cannot have decided to
                    // complete): the record answers.
                    _ => Decision::Reply(Outcome::Legs(original.clone())),
                },
                // The id names something else here: this part never prepared.
                Some(other) if rejection.is_some() => reused_legs(legs, *part, found_meta(&other)),
                Some(_) => malformed(Malformed::LegsNotPrepared),
                None => match rejection {
                    Some((leg, reason)) => Decision::Apply(Event::LegsAborted {
                        legs: legs.clone(),
                        part: *part,
                        leg,
                        reason,
                        meta,
                    }),
                    None => malformed(Malformed::LegsNotPrepared),
                },
            }
        }
        Command::FinishLegs { transaction_id } => {
            if transaction_id.is_nil() {
                return malformed(Malformed::NilTransactionId);
            }
            match found(transaction_id) {
                Some(Found::Legs(record)) => match record.status {
                    LegsStatus::Decided(_) => Decision::Apply(Event::LegsFinished {
                        transaction_id: *transaction_id,
                        meta,
                    }),
                    LegsStatus::Completed | LegsStatus::Rejected { .. } => {
                        Decision::Reply(Outcome::Legs(record.clone()))
                    }
                    LegsStatus::Prepared { .. } => malformed(Malformed::LegsNotPrepared),
                },
                _ => malformed(Malformed::LegsNotPrepared),
            }
        }
        Command::Expire { transaction_id } => {
            let (record, hold) = match hold_of(found(transaction_id), None) {
                Ok(found) => found,
                Err(refusal) => return Decision::Reply(Outcome::Hold(refusal)),
            };
            if hold.is_pending() && meta.timestamp_ms >= hold.expires_at_ms {
                Decision::Apply(Event::HoldExpired {
                    transaction_id: *transaction_id,
                    meta,
                })
            } else {
                Decision::Reply(Outcome::Transfer(record.clone()))
            }
        }
    }
}

/// The hold a hold step names (with the `from` account the caller names, if it names one),
/// or why there is none.
fn hold_of<'a>(
    found: Option<Found<'a>>,
    from: Option<&str>,
) -> Result<(&'a TransferRecord, Hold), HoldRefusal> {
    match found {
        Some(Found::Transfer(record)) if from.is_some_and(|from| from != record.transfer.from) => {
            Err(HoldRefusal::NotFound)
        }
        Some(Found::Transfer(record)) => match record.status.hold() {
            Some(hold) => Ok((record, *hold)),
            None => Err(HoldRefusal::NotAHold),
        },
        Some(Found::Legs(_)) => Err(HoldRefusal::NotAHold),
        // A credit here is the target side of a transfer from another partition: no hold.
        Some(Found::Credit(_)) | None => Err(HoldRefusal::NotFound),
    }
}

/// Applies an event. Panics (assert!) on events that cannot follow the state (programmer error / corrupt log): opening an existing account, completing a transfer whose id is known (in memory: records held only on disk are not consulted), unknown accounts in a completed transfer, an ordinary account going negative. Rejected transfers are recorded (TransferRecord with Rejected status) and move no money.
///
/// Also panics on a rejected transfer whose id is known or whose reason is not the one
/// `decide` would give in this state: replicas replaying the same log must agree, so an
/// event that disagrees with the state means the log or the code is wrong.
pub fn evolve(state: &mut Ledger, event: &Event) {
    evolve_owned(state, event.clone());
}

/// [`evolve`] taking the event by value, so its account ids and transfer move into the state
/// instead of being copied: what replays use.
pub fn evolve_owned(state: &mut Ledger, event: Event) {
    match event {
        Event::AccountOpened {
            account_id,
            currency,
            allow_negative_balance,
            annotations,
        } => {
            let opened = state.insert_account(AccountRef {
                account_id: &account_id,
                currency,
                allow_negative_balance,
                balance_minor: 0,
            });
            assert!(opened, "AccountOpened for existing account {account_id:?}");
            if let Some(annotations) = annotations {
                let hash = account_annotations_hash(&account_id, &annotations);
                state.records.add(&hash);
                state.account_annotations.insert(account_id, hash);
            }
        }
        Event::TransferCompleted { transfer, meta } => {
            assert_transfer_shape(&transfer);
            let id = transfer.transaction_id;
            assert!(
                !state.transfers.contains_key(&id.as_u128()),
                "TransferCompleted for known transaction id {id}"
            );
            let amount_minor = i128::from(transfer.amount_minor);
            let (from_hash, to_hash) = (IdHash::of(&transfer.from), IdHash::of(&transfer.to));
            let from = state.accounts.get(from_hash, &transfer.from);
            let from = from.unwrap_or_else(|| {
                panic!(
                    "TransferCompleted {id} from unknown account {:?}",
                    transfer.from
                )
            });
            let to = state.accounts.get(to_hash, &transfer.to);
            let to = to.unwrap_or_else(|| {
                panic!(
                    "TransferCompleted {id} to unknown account {:?}",
                    transfer.to
                )
            });
            assert!(
                from.currency == transfer.currency && to.currency == transfer.currency,
                "TransferCompleted {id} in {} between {} and {} accounts",
                transfer.currency,
                from.currency,
                to.currency,
            );
            let from_before = from.balance_minor;
            let to_before = to.balance_minor;
            let from_after = from_before
                .checked_sub(amount_minor)
                .expect("balance underflows i128");
            let floor = -i128::from(state.account_settings(&transfer.from).overdraft_limit_minor);
            assert!(
                from.allow_negative_balance || from_after >= floor,
                "TransferCompleted {id} takes ordinary account {:?} to {from_after}",
                transfer.from,
            );
            // Double entry: what left one account arrived in the other, nothing else moved.
            let debit_minor =
                from_before - move_balance(state, from_hash, &transfer.from, -amount_minor);
            let credit_minor = move_balance(state, to_hash, &transfer.to, amount_minor) - to_before;
            assert_eq!(debit_minor, credit_minor, "transfer {id}: debit != credit");
            assert_eq!(debit_minor, amount_minor, "transfer {id}: debit != amount");
            let record = TransferRecord {
                transfer,
                status: TransferStatus::Completed,
                meta,
                settlement: None,
            };
            state.insert_transfer(record);
        }
        Event::LegsCompleted { legs, meta } => {
            assert_new_legs(state, &legs);
            let id = legs.transaction_id;
            assert_eq!(
                legs_rejection(state, &legs),
                None,
                "LegsCompleted {id} cannot complete in this state"
            );
            // Double entry per leg: what leaves one account arrives in the other.
            for leg in &legs.legs {
                let amount_minor = i128::from(leg.amount_minor);
                let (from_hash, to_hash) = (IdHash::of(&leg.from), IdHash::of(&leg.to));
                move_balance(state, from_hash, &leg.from, -amount_minor);
                move_balance(state, to_hash, &leg.to, amount_minor);
            }
            for account_id in legs.accounts() {
                let account = state.account(account_id).expect("checked open");
                let floor = -i128::from(state.account_settings(account_id).overdraft_limit_minor);
                assert!(
                    account.allow_negative_balance || state.available_minor(account) >= floor,
                    "LegsCompleted {id} takes account {account_id:?} below its limit"
                );
            }
            state.insert_legs(LegsRecord {
                command: legs,
                status: LegsStatus::Completed,
                meta,
            });
        }
        Event::LegsRejected {
            legs,
            leg,
            reason,
            meta,
        } => {
            assert_new_legs(state, &legs);
            assert_eq!(
                legs_rejection(state, &legs),
                Some((leg, reason)),
                "LegsRejected {} disagrees with the state it is applied to",
                legs.transaction_id
            );
            state.insert_legs(LegsRecord {
                command: legs,
                status: LegsStatus::Rejected { leg, reason },
                meta,
            });
        }
        Event::LegsPrepared { legs, part, meta } => {
            assert_new_legs(state, &legs);
            let id = legs.transaction_id;
            assert!(
                part.fits(&legs),
                "LegsPrepared {id} with a part not of the set"
            );
            assert_eq!(
                part_rejection(state, &legs, part),
                None,
                "LegsPrepared {id} cannot prepare in this state"
            );
            // The part's net debits leave for the other parts, as a transfer's debit does.
            for (account_id, net) in part.net(&legs) {
                let hash = IdHash::of(account_id);
                if net < 0 {
                    move_balance(state, hash, account_id, net);
                    add_outflow(state, legs.currency, -net);
                    let account = state.account(account_id).expect("checked open");
                    let floor =
                        -i128::from(state.account_settings(account_id).overdraft_limit_minor);
                    assert!(
                        account.allow_negative_balance || state.available_minor(account) >= floor,
                        "LegsPrepared {id} takes account {account_id:?} below its limit"
                    );
                }
                if net != 0 {
                    count_debit_in_flight(state, hash, 1);
                }
            }
            state.insert_legs(LegsRecord {
                command: legs,
                status: LegsStatus::Prepared { part },
                meta,
            });
        }
        Event::LegsPartRefused {
            legs,
            part,
            leg,
            reason,
            meta,
        } => {
            assert_new_legs(state, &legs);
            let id = legs.transaction_id;
            assert!(
                part.fits(&legs),
                "LegsPartRefused {id} with a part not of the set"
            );
            assert_eq!(
                part_rejection(state, &legs, part),
                Some((leg, reason)),
                "LegsPartRefused {id} disagrees with the state it is applied to"
            );
            state.insert_legs(LegsRecord {
                command: legs,
                status: LegsStatus::Rejected { leg, reason },
                meta,
            });
        }
        Event::LegsAborted {
            legs,
            part,
            leg,
            reason,
            meta,
        } => {
            assert_new_legs(state, &legs);
            let id = legs.transaction_id;
            assert!(
                part.fits(&legs) && (leg as usize) < legs.legs.len(),
                "LegsAborted {id} with a part or leg not of the set"
            );
            state.insert_legs(LegsRecord {
                command: legs,
                status: LegsStatus::Rejected { leg, reason },
                meta,
            });
        }
        Event::LegsResolved {
            ref legs,
            part,
            decision,
            ..
        } => {
            let id = legs.transaction_id;
            let previous = state.legs.get(&id.as_u128()).unwrap_or_else(|| {
                panic!("LegsResolved {id}, which this partition never prepared")
            });
            let record = legs_record_after(previous, &event)
                .unwrap_or_else(|| panic!("LegsResolved {id} cannot follow {:?}", previous.status));
            // Completed: the part's net credits arrive; rejected: its net debits come back.
            for (account_id, net) in part.net(legs) {
                let hash = IdHash::of(account_id);
                let arrives = match decision {
                    LegsDecision::Completed => net.max(0),
                    LegsDecision::Rejected { .. } => (-net).max(0),
                };
                if arrives != 0 {
                    move_balance(state, hash, account_id, arrives);
                    add_outflow(state, legs.currency, -arrives);
                }
                if net != 0 {
                    count_debit_in_flight(state, hash, -1);
                }
            }
            state.insert_legs(record);
        }
        Event::LegsFinished { transaction_id, .. } => {
            let previous = state
                .legs
                .get(&transaction_id.as_u128())
                .unwrap_or_else(|| panic!("LegsFinished {transaction_id}, which is not recorded"));
            let record = legs_record_after(previous, &event).unwrap_or_else(|| {
                panic!(
                    "LegsFinished {transaction_id} cannot follow {:?}",
                    previous.status
                )
            });
            state.insert_legs(record);
        }
        Event::TransferRejected {
            transfer,
            reason,
            meta,
        } => {
            assert_transfer_shape(&transfer);
            let id = transfer.transaction_id;
            assert!(
                !state.transfers.contains_key(&id.as_u128()),
                "TransferRejected for known transaction id {id}"
            );
            // Same-partition transfers are checked whole, cross-partition ones on the debit
            // side only; the reason must be what one of those checks gives in this state.
            assert!(
                transfer_rejection(state, &transfer) == Some(reason)
                    || transfer_out_rejection(state, &transfer) == Some(reason),
                "TransferRejected {id} disagrees with the state it is applied to",
            );
            let record = TransferRecord {
                transfer,
                status: TransferStatus::Rejected(reason),
                meta,
                settlement: None,
            };
            state.insert_transfer(record);
        }
        Event::TransferDebited { transfer, meta } => {
            assert_transfer_shape(&transfer);
            let id = transfer.transaction_id;
            assert!(
                !state.transfers.contains_key(&id.as_u128()),
                "TransferDebited for known transaction id {id}"
            );
            assert_eq!(
                transfer_out_rejection(state, &transfer),
                None,
                "TransferDebited {id} cannot be debited in this state"
            );
            let amount_minor = i128::from(transfer.amount_minor);
            let from_hash = IdHash::of(&transfer.from);
            move_balance(state, from_hash, &transfer.from, -amount_minor);
            add_outflow(state, transfer.currency, amount_minor);
            count_debit_in_flight(state, from_hash, 1);
            let record = TransferRecord {
                transfer,
                status: TransferStatus::InFlight,
                meta,
                settlement: None,
            };
            state.insert_transfer(record);
            state.in_flight.insert(id.as_u128());
        }
        Event::TransferCredited { transfer, meta } => {
            assert_transfer_shape(&transfer);
            let id = transfer.transaction_id;
            assert!(
                !state.credits.contains_key(&id.as_u128()),
                "TransferCredited for known credit {id}"
            );
            assert_eq!(
                credit_refusal(state, &transfer),
                None,
                "TransferCredited {id} cannot be credited in this state"
            );
            let amount_minor = i128::from(transfer.amount_minor);
            move_balance(state, IdHash::of(&transfer.to), &transfer.to, amount_minor);
            add_outflow(state, transfer.currency, -amount_minor);
            let record = CreditRecord {
                transfer,
                outcome: CreditOutcome::Credited,
                meta,
            };
            state.insert_credit(record);
        }
        Event::CreditRefused {
            transfer,
            reason,
            meta,
        } => {
            assert_transfer_shape(&transfer);
            let id = transfer.transaction_id;
            assert!(
                !state.credits.contains_key(&id.as_u128()),
                "CreditRefused for known credit {id}"
            );
            assert_eq!(
                credit_refusal(state, &transfer),
                Some(reason),
                "CreditRefused {id} disagrees with the state it is applied to"
            );
            let record = CreditRecord {
                transfer,
                outcome: CreditOutcome::Refused(reason),
                meta,
            };
            state.insert_credit(record);
        }
        Event::TransferSettled { transaction_id, .. } => {
            let (previous, _) = settle(state, &transaction_id);
            let record = record_after(&previous, &event).expect("a settle finishes its record");
            state.insert_transfer(record);
        }
        Event::TransferRefunded { transaction_id, .. } => {
            let (previous, from_hash) = settle(state, &transaction_id);
            let refund = previous.credit_command();
            let record = record_after(&previous, &event).expect("a refund finishes its record");
            state.insert_transfer(record);
            let amount_minor = i128::from(refund.amount_minor);
            move_balance(state, from_hash, &refund.from, amount_minor);
            add_outflow(state, refund.currency, -amount_minor);
        }
        Event::HoldAuthorized {
            ref transfer,
            expires_at_ms,
            cross_partition,
            ..
        }
        | Event::HoldRefused {
            ref transfer,
            expires_at_ms,
            cross_partition,
            ..
        } => {
            assert_transfer_shape(transfer);
            let id = transfer.transaction_id;
            assert!(
                !state.transfers.contains_key(&id.as_u128()),
                "hold {id} authorized or refused under a known transaction id"
            );
            let refusal = match event {
                Event::HoldRefused { reason, .. } => Some(reason),
                _ => None,
            };
            assert_eq!(
                authorize_rejection(state, transfer, cross_partition),
                refusal,
                "hold {id}: the event disagrees with the state it is applied to"
            );
            if refusal.is_none() {
                hold_amount(state, &transfer.from, i128::from(transfer.amount_minor));
                state.expiries.insert((expires_at_ms, id.as_u128()));
            }
            let Some(Outcome::Transfer(record)) = Outcome::of_new(&event) else {
                unreachable!("an authorization, granted or refused, creates a transfer record")
            };
            state.insert_transfer(record);
        }
        Event::HoldCaptured {
            transaction_id,
            amount_minor,
            ..
        }
        | Event::HoldCaptureDebited {
            transaction_id,
            amount_minor,
            ..
        } => {
            // Within a partition the amount moves to `to`; across, it leaves for another
            // partition and the record waits in flight for the settle.
            let across = matches!(event, Event::HoldCaptureDebited { .. });
            assert_eq!(
                state
                    .transfer(&transaction_id)
                    .and_then(|record| Some(capture_refusal(state, record, record.status.hold()?))),
                Some(None),
                "{event:?}: an account of the hold cannot take part"
            );
            let (previous, hold) = release_hold(state, &transaction_id, &event);
            let transfer = &previous.transfer;
            assert!(
                hold.cross_partition == across
                    && (1..=transfer.amount_minor).contains(&amount_minor),
                "{event:?} cannot follow its hold"
            );
            let amount = i128::from(amount_minor);
            let to_hash = IdHash::of(&transfer.to);
            assert!(
                across
                    || state
                        .accounts
                        .get(to_hash, &transfer.to)
                        .is_some_and(|to| to.currency == transfer.currency),
                "HoldCaptured {transaction_id} into a missing account or currency"
            );
            let from_hash = IdHash::of(&transfer.from);
            move_balance(state, from_hash, &transfer.from, -amount);
            if across {
                add_outflow(state, transfer.currency, amount);
                count_debit_in_flight(state, from_hash, 1);
                state.in_flight.insert(transaction_id.as_u128());
            } else {
                move_balance(state, to_hash, &transfer.to, amount);
            }
            let record = record_after(&previous, &event).expect("a capture changes its hold");
            state.insert_transfer(record);
        }
        Event::HoldVoided { transaction_id, .. } => {
            let (previous, _) = release_hold(state, &transaction_id, &event);
            let record = record_after(&previous, &event).expect("a void changes its hold");
            state.insert_transfer(record);
        }
        Event::HoldExpired {
            transaction_id,
            meta,
        } => {
            let (previous, hold) = release_hold(state, &transaction_id, &event);
            assert!(
                meta.timestamp_ms >= hold.expires_at_ms,
                "HoldExpired {transaction_id} before its expiry"
            );
            let record = record_after(&previous, &event).expect("an expiry changes its hold");
            state.insert_transfer(record);
        }
        Event::AccountChanged {
            account_id, change, ..
        } => {
            assert_eq!(
                account_change_check(state, &account_id, change),
                Ok(true),
                "AccountChanged {account_id:?} {change:?} cannot follow the state"
            );
            let before = state.account_settings(&account_id);
            set_account_settings(state, account_id, before.after(change));
        }
    }
}

/// Stores an account's settings (dropping the entry when they are the default again),
/// keeping the record sum.
fn set_account_settings(state: &mut Ledger, account_id: String, settings: AccountSettings) {
    let previous = if settings == AccountSettings::default() {
        state.settings.remove(&account_id)
    } else {
        state.settings.insert(account_id.clone(), settings)
    };
    if let Some(previous) = previous {
        state.records.sub(&settings_hash(&account_id, previous));
    }
    if settings != AccountSettings::default() {
        state.records.add(&settings_hash(&account_id, settings));
    }
}

/// Adds `delta` to the count of cross-partition transfers from the account awaiting a
/// settle (no zero entries).
fn count_debit_in_flight(state: &mut Ledger, account: IdHash, delta: i64) {
    let key = account.key();
    let count = i64::from(state.debits_in_flight.get(&key).copied().unwrap_or(0)) + delta;
    let count =
        u32::try_from(count).expect("in-flight debits of an account fit u32, never below 0");
    if count == 0 {
        state.debits_in_flight.remove(&key);
    } else {
        state.debits_in_flight.insert(key, count);
    }
}

/// Takes a record awaiting a settle out of flight and returns a copy of it to finish and
/// put back, and the hash of its debited account's id; panics if it is not in flight.
fn settle(state: &mut Ledger, transaction_id: &uuid::Uuid) -> (TransferRecord, IdHash) {
    assert!(
        state.in_flight.remove(&transaction_id.as_u128()).is_some(),
        "settling {transaction_id}, which is not in flight"
    );
    let record = state
        .transfers
        .get(&transaction_id.as_u128())
        .expect("in-flight transfers are recorded");
    assert!(
        record.status.awaits_settle(),
        "settling {transaction_id}: {:?}",
        record.status
    );
    let record = record.clone();
    let from_hash = IdHash::of(&record.transfer.from);
    count_debit_in_flight(state, from_hash, -1);
    (record, from_hash)
}

/// Releases what a pending hold reserves, for the event that ends its pending state, and
/// returns a copy of its record and the hold; panics if it is not a pending hold.
fn release_hold(
    state: &mut Ledger,
    transaction_id: &uuid::Uuid,
    event: &Event,
) -> (TransferRecord, Hold) {
    let record = state
        .transfers
        .get(&transaction_id.as_u128())
        .unwrap_or_else(|| panic!("{event:?} of an unknown hold"))
        .clone();
    let hold = match record.status {
        TransferStatus::Hold(hold) if hold.is_pending() => hold,
        _ => panic!("{event:?} of a hold that is not pending"),
    };
    assert!(
        state
            .expiries
            .remove(&(hold.expires_at_ms, transaction_id.as_u128()))
            .is_some(),
        "pending hold {transaction_id} has no expiry"
    );
    hold_amount(
        state,
        &record.transfer.from,
        -i128::from(record.transfer.amount_minor),
    );
    (record, hold)
}

/// Adds `delta_minor` to what pending holds reserve on an account (no zero entries).
fn hold_amount(state: &mut Ledger, account_id: &str, delta_minor: i128) {
    let held = state.held.get(account_id).copied().unwrap_or(0) + delta_minor;
    assert!(held >= 0, "account {account_id:?} holds {held}");
    if held == 0 {
        state.held.remove(account_id);
    } else {
        state.held.insert(account_id.to_owned(), held);
    }
}

fn add_outflow(state: &mut Ledger, currency: Currency, delta_minor: i128) {
    let outflow = state.outflow.entry(currency).or_default();
    *outflow = outflow
        .checked_add(delta_minor)
        .expect("outflow overflows i128");
    if *outflow == 0 {
        // Keep the map canonical (no zero entries) so equal states have equal digests.
        state.outflow.remove(&currency);
    }
}

/// Adds `delta_minor` to the balance of the account with this id (whose hash is given),
/// keeping the totals and the record sum; returns the balance as stored.
fn move_balance(state: &mut Ledger, hash: IdHash, account_id: &str, delta_minor: i128) -> i128 {
    let (before, after) = state
        .accounts
        .add_to_balance(hash, account_id, delta_minor)
        .expect("account checked before");
    state.records.sub(&account_hash(before));
    state.records.add(&account_hash(after));
    add_balance_total(&mut state.balance_totals, after.currency, delta_minor);
    after.balance_minor
}

fn add_balance_total(totals: &mut BTreeMap<Currency, i128>, currency: Currency, delta: i128) {
    let total = totals.entry(currency).or_default();
    *total = total.checked_add(delta).expect("total overflows i128");
    if *total == 0 {
        totals.remove(&currency);
    }
}
