//! The fold: one event block (one applied raft entry) in, the projection rows it changes out.
//!
//! Pure: it reads current rows through [`Rows`] and returns what to write; the projector puts
//! the result and the partition's new position in one RocksDB batch. Each event variant is one
//! arm of [`Folder::event`], built from three steps that every variant, present or future,
//! composes: open an account, move an account's balance (one history row), set a transfer's
//! state.
//!
//! Transfers are keyed by (transaction id, source partition), the source partition being
//! `ledger::partition_of(from_account)`. The write side deduplicates an id only within the
//! source account's partition, so one id may legitimately head two transfers from two
//! partitions (a rejected one and a later one refunded with TRANSACTION_ID_REUSED, or two
//! fully disjoint ones); with this key they never meet. Every event that sets a transfer's
//! state is in its source partition's log (checked: a source-side event in another
//! partition's log is a fold error), and every balance an event moves belongs to the block's
//! own partition, so partitions fold independently of each other. Reads of a transfer by id
//! show [`preferred_transfer`] of its rows.
//!
//! A block the fold cannot apply (an error from [`fold_block`]) is never written and never
//! skipped: the projector stops that one partition just before it and keeps folding the
//! others (see `projector.rs`).

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};
use proto::v1::ledger_event::Event as PbEvent;
use proto::v1::{LedgerEvent, LegMoved, TransferAnnotations};

use crate::db::{BalanceRow, HistoryRow, LegRow, TransferRow, TransferState};

/// Where a block sits in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockPosition {
    pub partition: u32,
    pub index: u64,
    pub timestamp_ms: u64,
}

/// Current rows, as the projector sees them before the block.
pub trait Rows {
    fn balance(&self, account_id: &str) -> anyhow::Result<Option<BalanceRow>>;
    fn transfer(
        &self,
        transaction_id: &str,
        source_partition: u32,
    ) -> anyhow::Result<Option<TransferRow>>;
}

/// A transfer row's key: (transaction id, source partition).
pub type TransferKey = (String, u32);

/// The rejection reason of a transfer refused because another partition already used its id.
pub const TRANSACTION_ID_REUSED: &str = ledger::RejectReason::TransactionIdReused.reason();

/// The one row a read of `transaction_id` shows when several source partitions hold one:
/// `ledger::transfer_answer_rank`, the rule of the write node's GetTransfer too (a row not
/// rejected with TRANSACTION_ID_REUSED over one that is, then the lowest source partition).
pub fn preferred_transfer(rows: impl IntoIterator<Item = TransferRow>) -> Option<TransferRow> {
    rows.into_iter().min_by_key(|row| {
        let reused =
            row.state == TransferState::Rejected && row.reject_reason == TRANSACTION_ID_REUSED;
        ledger::transfer_answer_rank(row.source_partition, reused)
    })
}

/// What one block changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FoldOutput {
    /// Accounts after the block (one entry per account touched).
    pub balances: BTreeMap<String, BalanceRow>,
    /// Balance changes in order: the account's row right after the change, and the change.
    pub changes: Vec<(BalanceRow, HistoryRow)>,
    /// Transfers after the block, by (transaction id, source partition).
    pub transfers: BTreeMap<TransferKey, TransferRow>,
    /// Transfer state changes in order (each a full row at that version).
    pub transfer_changes: Vec<TransferRow>,
    /// What the accounts the block opens with a reference or metadata were opened with.
    pub account_annotations: Vec<(String, ledger::Annotations)>,
}

/// The identity of a transfer as its events carry it.
#[derive(Clone, Copy)]
struct TransferFacts<'a> {
    transaction_id: &'a str,
    from_account: &'a str,
    to_account: &'a str,
    amount_minor: i64,
    currency: &'a str,
    /// What the event carried (only events that carry the whole transfer do).
    annotations: Option<&'a TransferAnnotations>,
}

/// A multi-leg transfer's identity for its row: keyed by its first leg's `from` (the
/// partition every account of it is in), no single `to` or amount.
fn legs_facts<'a>(
    transaction_id: &'a str,
    currency: &'a str,
    legs: &'a [LegMoved],
    annotations: Option<&'a TransferAnnotations>,
) -> anyhow::Result<TransferFacts<'a>> {
    let first = legs
        .first()
        .with_context(|| format!("multi-leg transfer {transaction_id} without legs"))?;
    Ok(TransferFacts {
        transaction_id,
        from_account: &first.from_account,
        to_account: "",
        amount_minor: 0,
        currency,
        annotations,
    })
}

/// Whether a step of a multi-leg transfer across partitions is the home partition's.
fn legs_home(part: Option<&proto::v1::LegsPart>) -> bool {
    part.is_some_and(|part| part.home)
}

impl TransferRow {
    fn facts(&self) -> TransferFacts<'_> {
        TransferFacts {
            transaction_id: &self.transaction_id,
            from_account: &self.from_account,
            to_account: &self.to_account,
            amount_minor: self.amount_minor,
            currency: &self.currency,
            annotations: None,
        }
    }
}

/// Folds one block's events; `partitions` is the cluster's partition count.
pub fn fold_block(
    rows: &impl Rows,
    at: BlockPosition,
    partitions: u32,
    events: &[LedgerEvent],
) -> anyhow::Result<FoldOutput> {
    ensure!(
        at.partition < partitions,
        "block of partition {} in a cluster of {partitions} partitions",
        at.partition
    );
    let mut folder = Folder {
        rows,
        at,
        partitions,
        out: FoldOutput::default(),
    };
    for (position, event) in events.iter().enumerate() {
        folder.event(event).with_context(|| {
            format!(
                "folding event {position} of partition {} index {}",
                at.partition, at.index
            )
        })?;
    }
    Ok(folder.out)
}

struct Folder<'a, R> {
    rows: &'a R,
    at: BlockPosition,
    partitions: u32,
    out: FoldOutput,
}

impl<R: Rows> Folder<'_, R> {
    /// One arm per event variant, each composed of the three steps. A transfer's state is
    /// driven by its source partition's events only (debited, settled, refunded, or completed
    /// / rejected in one step): the target partition's stream may be folded ahead of the
    /// source's, so a credit touches only the credited balance.
    fn event(&mut self, event: &LedgerEvent) -> anyhow::Result<()> {
        match event
            .event
            .as_ref()
            .context("event without a variant: the write node is newer than this read node")?
        {
            PbEvent::AccountOpened(opened) => {
                self.open_account(
                    &opened.account_id,
                    &opened.currency,
                    opened.allow_negative_balance,
                )?;
                if let Some(annotations) =
                    event_codec::pb::annotations_from_pb(opened.annotations.as_ref())
                {
                    self.out
                        .account_annotations
                        .push((opened.account_id.clone(), *annotations));
                }
                Ok(())
            }
            PbEvent::TransferCompleted(completed) => {
                let facts = TransferFacts {
                    transaction_id: &completed.transaction_id,
                    from_account: &completed.from_account,
                    to_account: &completed.to_account,
                    amount_minor: completed.amount_minor,
                    currency: &completed.currency,
                    annotations: completed.annotations.as_ref(),
                };
                let amount = i128::from(completed.amount_minor);
                self.move_balance(&facts, facts.from_account, -amount, facts.to_account)?;
                self.move_balance(&facts, facts.to_account, amount, facts.from_account)?;
                self.set_transfer_state(&facts, TransferState::Completed, "")
            }
            PbEvent::TransferRejected(rejected) => {
                let facts = TransferFacts {
                    transaction_id: &rejected.transaction_id,
                    from_account: &rejected.from_account,
                    to_account: &rejected.to_account,
                    amount_minor: rejected.amount_minor,
                    currency: &rejected.currency,
                    annotations: rejected.annotations.as_ref(),
                };
                self.set_transfer_state(&facts, TransferState::Rejected, &rejected.reason)
            }
            PbEvent::TransferDebited(debited) => {
                let facts = TransferFacts {
                    transaction_id: &debited.transaction_id,
                    from_account: &debited.from_account,
                    to_account: &debited.to_account,
                    amount_minor: debited.amount_minor,
                    currency: &debited.currency,
                    annotations: debited.annotations.as_ref(),
                };
                let amount = i128::from(debited.amount_minor);
                self.move_balance(&facts, facts.from_account, -amount, facts.to_account)?;
                self.set_transfer_state(&facts, TransferState::InFlight, "")
            }
            PbEvent::TransferCredited(credited) => {
                let facts = TransferFacts {
                    transaction_id: &credited.transaction_id,
                    from_account: &credited.from_account,
                    to_account: &credited.to_account,
                    amount_minor: credited.amount_minor,
                    currency: &credited.currency,
                    annotations: credited.annotations.as_ref(),
                };
                let amount = i128::from(credited.amount_minor);
                self.move_balance(&facts, facts.to_account, amount, facts.from_account)
            }
            // Nothing moved on the target; the source's refund carries the outcome.
            PbEvent::CreditRefused(_) => Ok(()),
            PbEvent::TransferSettled(settled) => {
                let row = self.known_transfer(&settled.transaction_id)?;
                self.set_transfer_state(&row.facts(), TransferState::Completed, "")
            }
            PbEvent::TransferRefunded(refunded) => {
                let row = self.known_transfer(&refunded.transaction_id)?;
                let facts = row.facts();
                let amount = i128::from(row.amount_minor);
                self.move_balance(&facts, facts.from_account, amount, facts.to_account)?;
                self.set_transfer_state(&facts, TransferState::Rejected, &refunded.reason)
            }
            // Holds: a transfer row from the authorization on; balances move on capture only.
            PbEvent::HoldAuthorized(held) => {
                let facts = TransferFacts {
                    transaction_id: &held.transaction_id,
                    from_account: &held.from_account,
                    to_account: &held.to_account,
                    amount_minor: held.amount_minor,
                    currency: &held.currency,
                    annotations: held.annotations.as_ref(),
                };
                self.hold_amount(&facts, i128::from(held.amount_minor))?;
                self.set_transfer_state(&facts, TransferState::Pending, "")
            }
            PbEvent::HoldRefused(refused) => {
                let facts = TransferFacts {
                    transaction_id: &refused.transaction_id,
                    from_account: &refused.from_account,
                    to_account: &refused.to_account,
                    amount_minor: refused.amount_minor,
                    currency: &refused.currency,
                    annotations: refused.annotations.as_ref(),
                };
                self.set_transfer_state(&facts, TransferState::Rejected, &refused.reason)
            }
            // A capture's row carries the captured amount from here on (what moved, and what a
            // cross-partition refund gives back).
            PbEvent::HoldCaptured(captured) => {
                let row = self.known_transfer(&captured.transaction_id)?;
                self.hold_amount(&row.facts(), -i128::from(row.amount_minor))?;
                let facts = TransferFacts {
                    amount_minor: captured.amount_minor,
                    ..row.facts()
                };
                let amount = i128::from(captured.amount_minor);
                self.move_balance(&facts, facts.from_account, -amount, facts.to_account)?;
                self.move_balance(&facts, facts.to_account, amount, facts.from_account)?;
                self.set_transfer_state(&facts, TransferState::Completed, "")
            }
            PbEvent::HoldCaptureDebited(debited) => {
                let row = self.known_transfer(&debited.transaction_id)?;
                self.hold_amount(&row.facts(), -i128::from(row.amount_minor))?;
                let facts = TransferFacts {
                    amount_minor: debited.amount_minor,
                    ..row.facts()
                };
                let amount = i128::from(debited.amount_minor);
                self.move_balance(&facts, facts.from_account, -amount, facts.to_account)?;
                self.set_transfer_state(&facts, TransferState::InFlight, "")
            }
            PbEvent::HoldVoided(voided) => {
                let row = self.known_transfer(&voided.transaction_id)?;
                self.hold_amount(&row.facts(), -i128::from(row.amount_minor))?;
                self.set_transfer_state(&row.facts(), TransferState::Voided, "")
            }
            PbEvent::HoldExpired(expired) => {
                let row = self.known_transfer(&expired.transaction_id)?;
                self.hold_amount(&row.facts(), -i128::from(row.amount_minor))?;
                self.set_transfer_state(&row.facts(), TransferState::Expired, "")
            }
            // A multi-leg transfer: every leg's debit and credit in leg order (history rows
            // in that order), each account checked against its limit after all of them, then
            // one transfer row with the legs, keyed by the first leg's `from` (this partition).
            PbEvent::LegsCompleted(completed) => {
                let facts = legs_facts(
                    &completed.transaction_id,
                    &completed.currency,
                    &completed.legs,
                    completed.annotations.as_ref(),
                )?;
                for leg in &completed.legs {
                    let leg_facts = TransferFacts {
                        from_account: &leg.from_account,
                        to_account: &leg.to_account,
                        amount_minor: leg.amount_minor,
                        ..facts
                    };
                    let amount = i128::from(leg.amount_minor);
                    self.shift_balance(&leg_facts, &leg.from_account, -amount, &leg.to_account)?;
                    self.shift_balance(&leg_facts, &leg.to_account, amount, &leg.from_account)?;
                }
                for leg in &completed.legs {
                    self.check_floor(&leg.from_account)?;
                }
                self.set_legs_state(&facts, &completed.legs, TransferState::Completed, "", None)
            }
            PbEvent::LegsRejected(rejected) => {
                let facts = legs_facts(
                    &rejected.transaction_id,
                    &rejected.currency,
                    &rejected.legs,
                    rejected.annotations.as_ref(),
                )?;
                self.set_legs_state(
                    &facts,
                    &rejected.legs,
                    TransferState::Rejected,
                    &rejected.reason,
                    Some(rejected.leg),
                )
            }
            // A multi-leg transfer across partitions: each partition's events move its own
            // accounts' money (`moves`, one history row each); the home partition's carry the
            // set's state (in flight from its prepare, then its decision), keyed as a set
            // within a partition is.
            PbEvent::LegsPrepared(prepared) => {
                let facts = legs_facts(
                    &prepared.transaction_id,
                    &prepared.currency,
                    &prepared.legs,
                    prepared.annotations.as_ref(),
                )?;
                self.legs_moves(&facts, &prepared.moves)?;
                if legs_home(prepared.part.as_ref()) {
                    self.set_legs_state(&facts, &prepared.legs, TransferState::InFlight, "", None)?;
                }
                Ok(())
            }
            PbEvent::LegsResolved(resolved) => {
                let facts = legs_facts(
                    &resolved.transaction_id,
                    &resolved.currency,
                    &resolved.legs,
                    resolved.annotations.as_ref(),
                )?;
                self.legs_moves(&facts, &resolved.moves)?;
                if !legs_home(resolved.part.as_ref()) {
                    return Ok(());
                }
                if resolved.completed {
                    self.set_legs_state(&facts, &resolved.legs, TransferState::Completed, "", None)
                } else {
                    self.set_legs_state(
                        &facts,
                        &resolved.legs,
                        TransferState::Rejected,
                        &resolved.reason,
                        Some(resolved.leg),
                    )
                }
            }
            // Nothing moved; on the home, the set is rejected.
            PbEvent::LegsPartRefused(refused) if legs_home(refused.part.as_ref()) => {
                let facts = legs_facts(
                    &refused.transaction_id,
                    &refused.currency,
                    &refused.legs,
                    refused.annotations.as_ref(),
                )?;
                self.set_legs_state(
                    &facts,
                    &refused.legs,
                    TransferState::Rejected,
                    &refused.reason,
                    Some(refused.leg),
                )
            }
            PbEvent::LegsAborted(aborted) if legs_home(aborted.part.as_ref()) => {
                let facts = legs_facts(
                    &aborted.transaction_id,
                    &aborted.currency,
                    &aborted.legs,
                    aborted.annotations.as_ref(),
                )?;
                self.set_legs_state(
                    &facts,
                    &aborted.legs,
                    TransferState::Rejected,
                    &aborted.reason,
                    Some(aborted.leg),
                )
            }
            PbEvent::LegsPartRefused(_) | PbEvent::LegsAborted(_) | PbEvent::LegsFinished(_) => {
                Ok(())
            }
            // Lifecycle changes move no money: the row's settings change (no sequence, no
            // history row), so later debits are checked against the account's limit.
            PbEvent::AccountChanged(changed) => {
                let account_id = &changed.account_id;
                let mut row = self.balance(account_id)?.with_context(|| {
                    format!("account {account_id:?} changed before it was opened")
                })?;
                let change = event_codec::pb::account_change_from_pb(changed)?;
                row.settings = row.settings.after(change);
                row.touched_index = self.at.index;
                self.out.balances.insert(account_id.to_owned(), row);
                Ok(())
            }
        }
    }

    /// A multi-leg transfer's only state: its row with the legs (and the first refused leg).
    fn set_legs_state(
        &mut self,
        facts: &TransferFacts<'_>,
        legs: &[LegMoved],
        state: TransferState,
        reject_reason: &str,
        rejected_leg: Option<u32>,
    ) -> anyhow::Result<()> {
        let mut row = self.next_transfer_row(facts, state, reject_reason)?;
        row.legs = legs
            .iter()
            .map(|leg| LegRow {
                from_account: leg.from_account.clone(),
                to_account: leg.to_account.clone(),
                amount_minor: leg.amount_minor,
            })
            .collect();
        row.rejected_leg = rejected_leg;
        self.put_transfer_row(row);
        Ok(())
    }

    fn transfer(
        &self,
        transaction_id: &str,
        source_partition: u32,
    ) -> anyhow::Result<Option<TransferRow>> {
        match self
            .out
            .transfers
            .get(&(transaction_id.to_owned(), source_partition))
        {
            Some(row) => Ok(Some(row.clone())),
            None => self.rows.transfer(transaction_id, source_partition),
        }
    }

    /// A transfer this (its source) partition already debited: same log, so already folded.
    fn known_transfer(&self, transaction_id: &str) -> anyhow::Result<TransferRow> {
        self.transfer(transaction_id, self.at.partition)?
            .with_context(|| {
                format!(
                    "transfer {transaction_id} settles, refunds or resolves a hold in partition \
                     {} without a debit or hold there",
                    self.at.partition
                )
            })
    }

    /// The source partition of a transfer, which must be this block's: only the source's log
    /// sets a transfer's state.
    fn source_partition(&self, transfer: &TransferFacts<'_>) -> anyhow::Result<u32> {
        let source = ledger::partition_of(transfer.from_account, self.partitions);
        ensure!(
            source == self.at.partition,
            "transfer {} from {:?} (partition {source} of {}) changes state in the log of \
             partition {}",
            transfer.transaction_id,
            transfer.from_account,
            self.partitions,
            self.at.partition
        );
        Ok(source)
    }

    fn balance(&self, account_id: &str) -> anyhow::Result<Option<BalanceRow>> {
        match self.out.balances.get(account_id) {
            Some(row) => Ok(Some(row.clone())),
            None => self.rows.balance(account_id),
        }
    }

    fn open_account(
        &mut self,
        account_id: &str,
        currency: &str,
        allow_negative_balance: bool,
    ) -> anyhow::Result<()> {
        if let Some(existing) = self.balance(account_id)? {
            bail!(
                "account {account_id:?} opened twice (first at index {})",
                existing.opened_index
            );
        }
        let at = self.at;
        let row = BalanceRow {
            account_id: account_id.to_owned(),
            currency: currency.to_owned(),
            allow_negative_balance,
            balance_minor: 0,
            held_minor: 0,
            touched_index: at.index,
            sequence: 0,
            partition: at.partition,
            index: at.index,
            timestamp_ms: at.timestamp_ms,
            opened_index: at.index,
            opened_timestamp_ms: at.timestamp_ms,
            settings: ledger::AccountSettings::default(),
        };
        self.out.balances.insert(account_id.to_owned(), row);
        Ok(())
    }

    /// One balance change: the account's next sequence and one history row.
    fn move_balance(
        &mut self,
        transfer: &TransferFacts<'_>,
        account_id: &str,
        delta_minor: i128,
        counterparty: &str,
    ) -> anyhow::Result<()> {
        self.shift_balance(transfer, account_id, delta_minor, counterparty)?;
        self.check_floor(account_id)
    }

    /// A multi-leg step's balance changes, each checked against the account's limit.
    fn legs_moves(
        &mut self,
        facts: &TransferFacts<'_>,
        moves: &[proto::v1::LegsMove],
    ) -> anyhow::Result<()> {
        for step in moves {
            self.move_balance(facts, &step.account_id, i128::from(step.delta_minor), "")?;
        }
        Ok(())
    }

    /// That the account is not below its overdraft limit (after a change, or after all of a
    /// multi-leg transfer's, whose funds the ledger checks once per account).
    fn check_floor(&self, account_id: &str) -> anyhow::Result<()> {
        let row = self
            .balance(account_id)?
            .with_context(|| format!("unknown account {account_id:?}"))?;
        let floor = -i128::from(row.settings.overdraft_limit_minor);
        ensure!(
            row.allow_negative_balance || row.balance_minor >= floor,
            "account {account_id:?} would go below its overdraft limit: the event log and the \
             fold disagree"
        );
        Ok(())
    }

    /// [`Folder::move_balance`] without the overdraft check.
    fn shift_balance(
        &mut self,
        transfer: &TransferFacts<'_>,
        account_id: &str,
        delta_minor: i128,
        counterparty: &str,
    ) -> anyhow::Result<()> {
        let mut row = self
            .balance(account_id)?
            .with_context(|| format!("transfer moves money of unknown account {account_id:?}"))?;
        ensure!(
            row.currency == transfer.currency,
            "transfer in {} moves money of {account_id:?}, an account in {}",
            transfer.currency,
            row.currency
        );
        let at = self.at;
        row.balance_minor += delta_minor;
        row.sequence += 1;
        row.touched_index = at.index;
        row.partition = at.partition;
        row.index = at.index;
        row.timestamp_ms = at.timestamp_ms;
        let change = HistoryRow {
            sequence: row.sequence,
            transaction_id: transfer.transaction_id.to_owned(),
            delta_minor,
            balance_after_minor: row.balance_minor,
            counterparty: counterparty.to_owned(),
            partition: at.partition,
            index: at.index,
            timestamp_ms: at.timestamp_ms,
        };
        self.out.changes.push((row.clone(), change));
        self.out.balances.insert(account_id.to_owned(), row);
        Ok(())
    }

    /// What a hold reserves on its `from` account, added (`delta_minor` > 0) or released:
    /// the row changes, its balance and sequence do not (no history row, no push).
    fn hold_amount(&mut self, hold: &TransferFacts<'_>, delta_minor: i128) -> anyhow::Result<()> {
        let account_id = hold.from_account;
        let mut row = self
            .balance(account_id)?
            .with_context(|| format!("hold on unknown account {account_id:?}"))?;
        ensure!(
            row.currency == hold.currency,
            "hold in {} on {account_id:?}, an account in {}",
            hold.currency,
            row.currency
        );
        row.held_minor += delta_minor;
        row.touched_index = self.at.index;
        ensure!(
            row.held_minor >= 0,
            "account {account_id:?} would hold {}: the event log and the fold disagree",
            row.held_minor
        );
        self.out.balances.insert(account_id.to_owned(), row);
        Ok(())
    }

    /// The transfer's next state (a new version of its row).
    fn set_transfer_state(
        &mut self,
        transfer: &TransferFacts<'_>,
        state: TransferState,
        reject_reason: &str,
    ) -> anyhow::Result<()> {
        let row = self.next_transfer_row(transfer, state, reject_reason)?;
        self.put_transfer_row(row);
        Ok(())
    }

    /// The transfer's row in its next state (checked: no change after a final state).
    fn next_transfer_row(
        &self,
        transfer: &TransferFacts<'_>,
        state: TransferState,
        reject_reason: &str,
    ) -> anyhow::Result<TransferRow> {
        let source_partition = self.source_partition(transfer)?;
        let previous = self.transfer(transfer.transaction_id, source_partition)?;
        if let Some(previous) = &previous {
            ensure!(
                !previous.state.is_final(),
                "transfer {} of source partition {source_partition} changes state after its \
                 final state {:?}",
                transfer.transaction_id,
                previous.state
            );
        }
        let at = self.at;
        let row = TransferRow {
            transaction_id: transfer.transaction_id.to_owned(),
            source_partition,
            from_account: transfer.from_account.to_owned(),
            to_account: transfer.to_account.to_owned(),
            amount_minor: transfer.amount_minor,
            currency: transfer.currency.to_owned(),
            state,
            reject_reason: reject_reason.to_owned(),
            version: previous.as_ref().map_or(1, |previous| previous.version + 1),
            partition: at.partition,
            index: at.index,
            timestamp_ms: at.timestamp_ms,
            // Kept from the first state: a later event (a settle, a capture) names the
            // transfer only by its id.
            annotations: match previous {
                Some(previous) => previous.annotations,
                None => event_codec::pb::annotations_from_pb(transfer.annotations),
            },
            // A multi-leg transfer's are set by `set_legs_state`, in its only state.
            legs: Vec::new(),
            rejected_leg: None,
        };
        Ok(row)
    }

    fn put_transfer_row(&mut self, row: TransferRow) {
        self.out.transfer_changes.push(row.clone());
        let key = (row.transaction_id.clone(), row.source_partition);
        self.out.transfers.insert(key, row);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proto::v1::{
        AccountChangeKind, AccountChanged, AccountOpened, TransferCompleted, TransferRejected,
    };

    use super::*;

    #[derive(Default)]
    struct MemRows {
        balances: HashMap<String, BalanceRow>,
        transfers: HashMap<TransferKey, TransferRow>,
    }

    impl Rows for MemRows {
        fn balance(&self, account_id: &str) -> anyhow::Result<Option<BalanceRow>> {
            Ok(self.balances.get(account_id).cloned())
        }
        fn transfer(
            &self,
            transaction_id: &str,
            source_partition: u32,
        ) -> anyhow::Result<Option<TransferRow>> {
            Ok(self
                .transfers
                .get(&(transaction_id.to_owned(), source_partition))
                .cloned())
        }
    }

    impl MemRows {
        fn apply(&mut self, out: FoldOutput) {
            self.balances.extend(out.balances);
            self.transfers.extend(out.transfers);
        }
    }

    fn open(id: &str, negative: bool) -> LedgerEvent {
        LedgerEvent {
            event: Some(PbEvent::AccountOpened(AccountOpened {
                account_id: id.into(),
                currency: "USD".into(),
                allow_negative_balance: negative,
                ..Default::default()
            })),
        }
    }

    fn completed(tx: &str, from: &str, to: &str, minor: i64) -> LedgerEvent {
        LedgerEvent {
            event: Some(PbEvent::TransferCompleted(TransferCompleted {
                transaction_id: tx.into(),
                from_account: from.into(),
                to_account: to.into(),
                amount: String::new(),
                amount_minor: minor,
                currency: "USD".into(),
                ..Default::default()
            })),
        }
    }

    /// A transfer's key in a one-partition cluster.
    fn key(tx: &str) -> TransferKey {
        (tx.to_owned(), 0)
    }

    fn at(index: u64) -> BlockPosition {
        BlockPosition {
            partition: 0,
            index,
            timestamp_ms: 1_000 + index,
        }
    }

    fn overdraft_limit(id: &str, minor: i64) -> LedgerEvent {
        LedgerEvent {
            event: Some(PbEvent::AccountChanged(AccountChanged {
                account_id: id.into(),
                change: AccountChangeKind::SetOverdraftLimit as i32,
                overdraft_limit: String::new(),
                overdraft_limit_minor: minor,
                currency: "USD".into(),
            })),
        }
    }

    /// What the write side accepted the fold accepts: an ordinary account within its
    /// overdraft limit is below zero; past the limit the fold and the log disagree.
    #[test]
    fn an_overdraft_limit_lets_a_balance_go_that_far_below_zero() {
        let mut rows = MemRows::default();
        let opened = [open("issuer", true), open("alice", false)];
        rows.apply(fold_block(&rows, at(1), 1, &opened).unwrap());
        let limited = fold_block(&rows, at(2), 2, &[overdraft_limit("alice", 50)]).unwrap();
        assert!(limited.changes.is_empty(), "a limit moves no money");
        rows.apply(limited);
        assert_eq!(rows.balances["alice"].settings.overdraft_limit_minor, 50);
        let spent = fold_block(&rows, at(3), 3, &[completed("t1", "alice", "issuer", 30)]);
        rows.apply(spent.unwrap());
        assert_eq!(rows.balances["alice"].balance_minor, -30);
        let past = fold_block(&rows, at(4), 4, &[completed("t2", "alice", "issuer", 21)]);
        let error = past.expect_err("past the limit");
        assert!(
            format!("{error:#}").contains("overdraft limit"),
            "{error:#}"
        );
    }

    #[test]
    fn a_block_chains_changes_of_one_account() {
        let mut rows = MemRows::default();
        let out = fold_block(
            &rows,
            at(1),
            1,
            &[open("issuer", true), open("alice", false)],
        )
        .unwrap();
        assert!(out.changes.is_empty());
        rows.apply(out);
        let out = fold_block(
            &rows,
            at(2),
            1,
            &[
                completed("t1", "issuer", "alice", 500),
                completed("t2", "alice", "issuer", 200),
            ],
        )
        .unwrap();
        let alice: Vec<(u64, i128, i128)> = out
            .changes
            .iter()
            .filter(|(row, _)| row.account_id == "alice")
            .map(|(row, change)| (row.sequence, change.delta_minor, change.balance_after_minor))
            .collect();
        assert_eq!(alice, [(1, 500, 500), (2, -200, 300)]);
        assert_eq!(out.balances["issuer"].balance_minor, -300);
        assert_eq!(out.balances["issuer"].sequence, 2);
        assert_eq!(out.transfers[&key("t2")].state, TransferState::Completed);
        assert_eq!(out.transfers[&key("t2")].version, 1);
    }

    #[test]
    fn cross_partition_transfers_fold_from_both_logs() {
        use proto::v1::{TransferCredited, TransferDebited, TransferRefunded, TransferSettled};
        let mut rows = MemRows::default();
        rows.apply(fold_block(&rows, at(1), 1, &[open("src", true), open("dst", false)]).unwrap());
        let fields = |tx: &str| (tx.to_owned(), "src".to_owned(), "dst".to_owned());
        let debit = |tx: &str| {
            let (transaction_id, from_account, to_account) = fields(tx);
            LedgerEvent {
                event: Some(PbEvent::TransferDebited(TransferDebited {
                    transaction_id,
                    from_account,
                    to_account,
                    amount: "2.00".into(),
                    amount_minor: 200,
                    currency: "USD".into(),
                    ..Default::default()
                })),
            }
        };
        // The target's credit may be folded before the source's debit.
        let (transaction_id, from_account, to_account) = fields("x");
        let credit = LedgerEvent {
            event: Some(PbEvent::TransferCredited(TransferCredited {
                transaction_id,
                from_account,
                to_account,
                amount: "2.00".into(),
                amount_minor: 200,
                currency: "USD".into(),
                ..Default::default()
            })),
        };
        rows.apply(fold_block(&rows, at(2), 1, &[credit]).unwrap());
        assert_eq!(rows.balances["dst"].balance_minor, 200);
        assert!(!rows.transfers.contains_key(&key("x")));
        rows.apply(fold_block(&rows, at(3), 1, &[debit("x")]).unwrap());
        assert_eq!(rows.transfers[&key("x")].state, TransferState::InFlight);
        let settled = LedgerEvent {
            event: Some(PbEvent::TransferSettled(TransferSettled {
                transaction_id: "x".into(),
                credit_index: 2,
            })),
        };
        rows.apply(fold_block(&rows, at(4), 1, &[settled]).unwrap());
        assert_eq!(rows.transfers[&key("x")].state, TransferState::Completed);
        assert_eq!(rows.transfers[&key("x")].version, 2);
        assert_eq!(rows.balances["src"].balance_minor, -200);
        // A refused credit: the source refunds, the transfer ends rejected.
        rows.apply(fold_block(&rows, at(5), 1, &[debit("y")]).unwrap());
        let refunded = LedgerEvent {
            event: Some(PbEvent::TransferRefunded(TransferRefunded {
                transaction_id: "y".into(),
                reason: "ACCOUNT_NOT_FOUND".into(),
                field: "to_account".into(),
                credit_index: 9,
            })),
        };
        let out = fold_block(&rows, at(6), 1, &[refunded]).unwrap();
        assert_eq!(out.changes[0].1.delta_minor, 200);
        rows.apply(out);
        assert_eq!(rows.balances["src"].balance_minor, -200);
        assert_eq!(rows.balances["src"].sequence, 3);
        assert_eq!(rows.transfers[&key("y")].state, TransferState::Rejected);
    }

    #[test]
    fn sets_across_partitions_fold_each_part_in_its_own_log() {
        // Two accounts on partitions 0 and 1 of 2; the home is 0 (the first leg's `from`).
        let on = |partition: u32| {
            (0..)
                .map(|n| format!("acct-{n}"))
                .find(|id| ledger::partition_of(id, 2) == partition)
                .unwrap()
        };
        let (a, b) = (on(0), on(1));
        let at_in = |partition: u32, index: u64| BlockPosition {
            partition,
            ..at(index)
        };
        let mut rows = MemRows::default();
        rows.apply(fold_block(&rows, at_in(0, 1), 2, &[open(&a, true)]).unwrap());
        rows.apply(fold_block(&rows, at_in(1, 1), 2, &[open(&b, false)]).unwrap());
        let legs = |id: u128| ledger::LegsCommand {
            transaction_id: uuid::Uuid::from_u128(id),
            currency: ledger::Currency::parse("USD").unwrap(),
            legs: vec![ledger::Leg {
                from: a.clone(),
                to: b.clone(),
                amount_minor: 200,
            }],
            annotations: None,
        };
        let part = |legs: &ledger::LegsCommand, partition: u32| {
            ledger::LegsPart::of(legs, |id| ledger::partition_of(id, 2) == partition)
        };
        let meta = ledger::EntryMeta {
            index: 0,
            timestamp_ms: 0,
        };
        let pb = |event: ledger::Event| event_codec::pb::event_to_pb(&event);
        let set = legs(1);
        let key = (set.transaction_id.hyphenated().to_string(), 0);
        let prepared = |partition| {
            pb(ledger::Event::LegsPrepared {
                legs: set.clone(),
                part: part(&set, partition),
                meta,
            })
        };
        let resolved = |partition, decision| {
            pb(ledger::Event::LegsResolved {
                legs: set.clone(),
                part: part(&set, partition),
                decision,
                meta,
            })
        };
        // The home's prepare debits `a` and shows the set in flight; the other part's moves
        // nothing (its account only receives).
        rows.apply(fold_block(&rows, at_in(0, 2), 2, &[prepared(0)]).unwrap());
        assert_eq!(rows.balances[&a].balance_minor, -200);
        assert_eq!(rows.transfers[&key].state, TransferState::InFlight);
        assert_eq!(rows.transfers[&key].legs.len(), 1);
        rows.apply(fold_block(&rows, at_in(1, 2), 2, &[prepared(1)]).unwrap());
        assert_eq!(rows.balances[&b].balance_minor, 0);
        // The decision: completed on the home, then the credit in `b`'s log.
        let completed = ledger::LegsDecision::Completed;
        rows.apply(fold_block(&rows, at_in(0, 3), 2, &[resolved(0, completed)]).unwrap());
        assert_eq!(rows.transfers[&key].state, TransferState::Completed);
        rows.apply(fold_block(&rows, at_in(1, 3), 2, &[resolved(1, completed)]).unwrap());
        assert_eq!(rows.balances[&b].balance_minor, 200);
        let finished = pb(ledger::Event::LegsFinished {
            transaction_id: set.transaction_id,
            meta,
        });
        rows.apply(fold_block(&rows, at_in(0, 4), 2, &[finished]).unwrap());
        assert_eq!(rows.transfers[&key].state, TransferState::Completed);

        // A rejected set: the home's debit comes back, the set is rejected with the reason
        // and leg; the part told before it prepared moves nothing.
        let set = legs(2);
        let key = (set.transaction_id.hyphenated().to_string(), 0);
        let rejected = ledger::LegsDecision::Rejected {
            leg: 0,
            reason: ledger::RejectReason::ToAccountFrozen,
        };
        let home_part = part(&set, 0);
        let events = [
            pb(ledger::Event::LegsPrepared {
                legs: set.clone(),
                part: home_part,
                meta,
            }),
            pb(ledger::Event::LegsResolved {
                legs: set.clone(),
                part: home_part,
                decision: rejected,
                meta,
            }),
        ];
        rows.apply(fold_block(&rows, at_in(0, 5), 2, &events).unwrap());
        assert_eq!(rows.balances[&a].balance_minor, -200);
        assert_eq!(rows.transfers[&key].state, TransferState::Rejected);
        assert_eq!(rows.transfers[&key].reject_reason, "ACCOUNT_FROZEN");
        assert_eq!(rows.transfers[&key].rejected_leg, Some(0));
        let aborted = pb(ledger::Event::LegsAborted {
            legs: set.clone(),
            part: part(&set, 1),
            leg: 0,
            reason: ledger::RejectReason::ToAccountFrozen,
            meta,
        });
        rows.apply(fold_block(&rows, at_in(1, 5), 2, &[aborted]).unwrap());
        assert_eq!(rows.balances[&b].balance_minor, 200);
    }

    #[test]
    fn rejections_move_nothing_and_inconsistencies_stop_the_fold() {
        let mut rows = MemRows::default();
        rows.apply(fold_block(&rows, at(1), 1, &[open("a", false), open("b", false)]).unwrap());
        let rejected = LedgerEvent {
            event: Some(PbEvent::TransferRejected(TransferRejected {
                transaction_id: "t".into(),
                from_account: "a".into(),
                to_account: "b".into(),
                amount: "1.00".into(),
                amount_minor: 100,
                currency: "USD".into(),
                reason: "INSUFFICIENT_FUNDS".into(),
                field: "amount".into(),
                ..Default::default()
            })),
        };
        let out = fold_block(&rows, at(2), 1, &[rejected]).unwrap();
        assert!(out.changes.is_empty());
        assert_eq!(out.transfers[&key("t")].reject_reason, "INSUFFICIENT_FUNDS");
        // An ordinary account going negative means the log and the fold disagree.
        assert!(fold_block(&rows, at(3), 1, &[completed("t3", "a", "b", 1)]).is_err());
        assert!(fold_block(&rows, at(3), 1, &[open("a", false)]).is_err());
        assert!(fold_block(&rows, at(3), 1, &[LedgerEvent { event: None }]).is_err());
    }

    // ---- One transaction id as the source of transfers in two partitions. ----

    const X: &str = "7b6c3f2e-1d4a-4c8b-9e0f-a1b2c3d4e5f6";

    /// An account name that lives in `partition` of `partitions`.
    fn account_in(name: &str, partition: u32, partitions: u32) -> String {
        (0..)
            .map(|n| format!("{name}-{n}"))
            .find(|account| ledger::partition_of(account, partitions) == partition)
            .expect("some name hashes to every partition")
    }

    fn at_in(partition: u32, index: u64) -> BlockPosition {
        BlockPosition {
            partition,
            index,
            timestamp_ms: 5_000 + index,
        }
    }

    fn opened(id: &str, negative: bool) -> LedgerEvent {
        open(id, negative)
    }

    struct Facts<'a>(&'a str, &'a str, i64);

    fn rejected(tx: &str, Facts(from, to, minor): Facts<'_>, reason: &str) -> LedgerEvent {
        LedgerEvent {
            event: Some(PbEvent::TransferRejected(TransferRejected {
                transaction_id: tx.into(),
                from_account: from.into(),
                to_account: to.into(),
                amount: String::new(),
                amount_minor: minor,
                currency: "USD".into(),
                reason: reason.into(),
                field: String::new(),
                ..Default::default()
            })),
        }
    }

    fn debited(tx: &str, Facts(from, to, minor): Facts<'_>) -> LedgerEvent {
        LedgerEvent {
            event: Some(PbEvent::TransferDebited(proto::v1::TransferDebited {
                transaction_id: tx.into(),
                from_account: from.into(),
                to_account: to.into(),
                amount: String::new(),
                amount_minor: minor,
                currency: "USD".into(),
                ..Default::default()
            })),
        }
    }

    fn credited(tx: &str, Facts(from, to, minor): Facts<'_>) -> LedgerEvent {
        LedgerEvent {
            event: Some(PbEvent::TransferCredited(proto::v1::TransferCredited {
                transaction_id: tx.into(),
                from_account: from.into(),
                to_account: to.into(),
                amount: String::new(),
                amount_minor: minor,
                currency: "USD".into(),
                ..Default::default()
            })),
        }
    }

    fn settled(tx: &str, credit_index: u64) -> LedgerEvent {
        LedgerEvent {
            event: Some(PbEvent::TransferSettled(proto::v1::TransferSettled {
                transaction_id: tx.into(),
                credit_index,
            })),
        }
    }

    fn refunded(tx: &str, reason: &str) -> LedgerEvent {
        LedgerEvent {
            event: Some(PbEvent::TransferRefunded(proto::v1::TransferRefunded {
                transaction_id: tx.into(),
                reason: reason.into(),
                field: "transaction_id".into(),
                credit_index: 0,
            })),
        }
    }

    /// Folds `events` as block `index` of `partition` into `rows`; panics on a fold error.
    fn fold_into(
        rows: &mut MemRows,
        partitions: u32,
        partition: u32,
        index: u64,
        events: &[LedgerEvent],
    ) -> FoldOutput {
        let out = fold_block(rows, at_in(partition, index), partitions, events)
            .unwrap_or_else(|error| panic!("partition {partition} index {index}: {error:#}"));
        rows.balances.extend(out.balances.clone());
        rows.transfers.extend(out.transfers.clone());
        out
    }

    fn rows_of(rows: &MemRows, tx: &str) -> Vec<TransferRow> {
        let mut found: Vec<TransferRow> = rows
            .transfers
            .values()
            .filter(|row| row.transaction_id == tx)
            .cloned()
            .collect();
        found.sort_by_key(|row| row.source_partition);
        found
    }

    /// Case (a): X is rejected in P1 (insufficient funds), then sent again from P2 to an
    /// account of P1. P2 debits, P1 refuses the credit without logging anything, P2 refunds
    /// with TRANSACTION_ID_REUSED. Both folds succeed, both rows exist, and a read by id shows
    /// the P1 rejection (the record that is not "id reused").
    #[test]
    fn case_a_rejected_then_reused_from_another_partition_folds() {
        const N: u32 = 4;
        let (a, c) = (account_in("a", 1, N), account_in("c", 1, N));
        let b = account_in("b", 2, N);
        let mut rows = MemRows::default();
        fold_into(&mut rows, N, 1, 1, &[opened(&a, false), opened(&c, false)]);
        fold_into(&mut rows, N, 2, 1, &[opened(&b, true)]);
        fold_into(
            &mut rows,
            N,
            1,
            2,
            &[rejected(X, Facts(&a, &c, 100), "INSUFFICIENT_FUNDS")],
        );
        fold_into(&mut rows, N, 2, 2, &[debited(X, Facts(&b, &c, 50))]);
        assert_eq!(
            rows.transfers[&(X.to_owned(), 2)].state,
            TransferState::InFlight
        );
        let out = fold_into(&mut rows, N, 2, 3, &[refunded(X, TRANSACTION_ID_REUSED)]);
        // The refund gave b its money back: one more history row, balance 0.
        assert_eq!(out.changes.len(), 1);
        assert_eq!(out.changes[0].1.delta_minor, 50);
        assert_eq!(rows.balances[&b].balance_minor, 0);
        assert_eq!(rows.balances[&b].sequence, 2);
        assert_eq!(rows.balances[&c].balance_minor, 0);
        assert_eq!(rows.balances[&c].sequence, 0);

        let both = rows_of(&rows, X);
        let summary: Vec<(u32, TransferState, &str, u32)> = both
            .iter()
            .map(|row| {
                (
                    row.source_partition,
                    row.state,
                    row.reject_reason.as_str(),
                    row.version,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, TransferState::Rejected, "INSUFFICIENT_FUNDS", 1),
                (2, TransferState::Rejected, TRANSACTION_ID_REUSED, 2),
            ]
        );
        // One answer whatever the order the rows are found in.
        for candidates in [both.clone(), both.iter().rev().cloned().collect()] {
            let shown = preferred_transfer(candidates).expect("a row");
            assert_eq!(
                (shown.source_partition, shown.reject_reason.as_str()),
                (1, "INSUFFICIENT_FUNDS")
            );
        }
    }

    /// Case (b): X completes inside P1, and X again goes from P3 to P4 (debit in P3, credit in
    /// P4 folded before it, settle in P3). Both transfers are complete with their own rows and
    /// versions, every balance moved once, and a read by id shows the lowest source partition.
    #[test]
    fn case_b_disjoint_transfers_under_one_id_fold() {
        const N: u32 = 8;
        let (a, b) = (account_in("a", 1, N), account_in("b", 1, N));
        let c = account_in("c", 3, N);
        let d = account_in("d", 4, N);
        let mut rows = MemRows::default();
        fold_into(&mut rows, N, 1, 1, &[opened(&a, true), opened(&b, false)]);
        fold_into(&mut rows, N, 3, 1, &[opened(&c, true)]);
        fold_into(&mut rows, N, 4, 1, &[opened(&d, false)]);
        fold_into(&mut rows, N, 1, 2, &[completed(X, &a, &b, 700)]);
        // The target's stream may be folded ahead of the source's.
        fold_into(&mut rows, N, 4, 2, &[credited(X, Facts(&c, &d, 300))]);
        fold_into(&mut rows, N, 3, 2, &[debited(X, Facts(&c, &d, 300))]);
        // Before: this was "transfer X changes state after its final state Completed".
        fold_into(&mut rows, N, 3, 3, &[settled(X, 2)]);

        let balances: Vec<i128> = [&a, &b, &c, &d]
            .iter()
            .map(|account| rows.balances[*account].balance_minor)
            .collect();
        assert_eq!(balances, [-700, 700, -300, 300]);
        let both = rows_of(&rows, X);
        let summary: Vec<(u32, &str, &str, TransferState, u32, i64)> = both
            .iter()
            .map(|row| {
                (
                    row.source_partition,
                    row.from_account.as_str(),
                    row.to_account.as_str(),
                    row.state,
                    row.version,
                    row.amount_minor,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, a.as_str(), b.as_str(), TransferState::Completed, 1, 700),
                (3, c.as_str(), d.as_str(), TransferState::Completed, 2, 300),
            ]
        );
        for candidates in [both.clone(), both.iter().rev().cloned().collect()] {
            let shown = preferred_transfer(candidates).expect("a row");
            assert_eq!((shown.source_partition, shown.amount_minor), (1, 700));
        }
    }

    #[test]
    fn reads_by_id_prefer_a_record_not_rejected_as_reused_then_the_lowest_partition() {
        let row = |source_partition: u32, state: TransferState, reason: &str| TransferRow {
            transaction_id: X.into(),
            source_partition,
            from_account: "f".into(),
            to_account: "t".into(),
            amount_minor: 1,
            currency: "USD".into(),
            state,
            reject_reason: reason.into(),
            version: 1,
            partition: source_partition,
            index: 1,
            timestamp_ms: 1,
            annotations: None,
            legs: Vec::new(),
            rejected_leg: None,
        };
        let pick = |rows: Vec<TransferRow>| {
            let forward = preferred_transfer(rows.clone()).map(|row| row.source_partition);
            let backward =
                preferred_transfer(rows.into_iter().rev()).map(|row| row.source_partition);
            assert_eq!(
                forward, backward,
                "the order rows are read in does not matter"
            );
            forward
        };
        assert_eq!(
            TRANSACTION_ID_REUSED,
            ledger::RejectReason::TransactionIdReused.reason()
        );
        assert_eq!(pick(vec![]), None);
        // "Id reused" loses to anything, even an in-flight transfer of a higher partition.
        assert_eq!(
            pick(vec![
                row(0, TransferState::Rejected, TRANSACTION_ID_REUSED),
                row(5, TransferState::InFlight, ""),
            ]),
            Some(5)
        );
        assert_eq!(
            pick(vec![
                row(2, TransferState::Rejected, "INSUFFICIENT_FUNDS"),
                row(6, TransferState::Completed, ""),
                row(1, TransferState::Rejected, TRANSACTION_ID_REUSED),
            ]),
            Some(2)
        );
        // Only "id reused" records: the lowest partition.
        assert_eq!(
            pick(vec![
                row(4, TransferState::Rejected, TRANSACTION_ID_REUSED),
                row(3, TransferState::Rejected, TRANSACTION_ID_REUSED),
            ]),
            Some(3)
        );
    }

    /// A transfer's state only changes in its source partition's log, and a settle or refund
    /// looks for the debit in its own partition only.
    #[test]
    fn source_side_events_must_be_in_the_source_partitions_log() {
        const N: u32 = 4;
        let (a, b) = (account_in("a", 1, N), account_in("b", 1, N));
        let c = account_in("c", 2, N);
        let mut rows = MemRows::default();
        fold_into(&mut rows, N, 1, 1, &[opened(&a, true), opened(&b, false)]);
        fold_into(&mut rows, N, 2, 1, &[opened(&c, false)]);
        fold_into(&mut rows, N, 1, 2, &[debited(X, Facts(&a, &c, 10))]);
        // A debit of a P1 account in P2's log: the log is not what this node thinks.
        let error = fold_block(&rows, at_in(2, 2), N, &[debited(X, Facts(&a, &c, 10))])
            .expect_err("wrong partition");
        assert!(
            format!("{error:#}").contains("partition 1 of 4"),
            "{error:#}"
        );
        // X is in flight from P1; a settle in P2's log finds no debit there.
        let error = fold_block(&rows, at_in(2, 2), N, &[settled(X, 1)]).expect_err("no debit");
        assert!(
            format!("{error:#}").contains("without a debit"),
            "{error:#}"
        );
        // A block of a partition the cluster does not have.
        assert!(fold_block(&rows, at_in(N, 1), N, &[]).is_err());
    }
}
