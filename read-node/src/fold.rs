//! The fold: one event block (one applied raft entry) in, the projection rows it changes out.
//!
//! Pure: it reads current rows through [`Rows`] and returns what to write; the projector puts
//! the result and the partition's new position in one RocksDB batch. Each event variant is one
//! arm of [`Folder::event`], built from three steps that every variant, present or future,
//! composes: open an account, move an account's balance (one history row), set a transfer's
//! state.

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};
use proto::v1::LedgerEvent;
use proto::v1::ledger_event::Event as PbEvent;

use crate::db::{BalanceRow, HistoryRow, TransferRow, TransferState};

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
    fn transfer(&self, transaction_id: &str) -> anyhow::Result<Option<TransferRow>>;
}

/// What one block changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FoldOutput {
    /// Accounts after the block (one entry per account touched).
    pub balances: BTreeMap<String, BalanceRow>,
    /// Balance changes in order: the account's row right after the change, and the change.
    pub changes: Vec<(BalanceRow, HistoryRow)>,
    /// Transfers after the block.
    pub transfers: BTreeMap<String, TransferRow>,
    /// Transfer state changes in order (each a full row at that version).
    pub transfer_changes: Vec<TransferRow>,
}

/// The identity of a transfer as its events carry it.
struct TransferFacts<'a> {
    transaction_id: &'a str,
    from_account: &'a str,
    to_account: &'a str,
    amount_minor: i64,
    currency: &'a str,
}

impl TransferRow {
    fn facts(&self) -> TransferFacts<'_> {
        TransferFacts {
            transaction_id: &self.transaction_id,
            from_account: &self.from_account,
            to_account: &self.to_account,
            amount_minor: self.amount_minor,
            currency: &self.currency,
        }
    }
}

/// Folds one block's events.
pub fn fold_block(
    rows: &impl Rows,
    at: BlockPosition,
    events: &[LedgerEvent],
) -> anyhow::Result<FoldOutput> {
    let mut folder = Folder {
        rows,
        at,
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
            PbEvent::AccountOpened(opened) => self.open_account(
                &opened.account_id,
                &opened.currency,
                opened.allow_negative_balance,
            ),
            PbEvent::TransferCompleted(completed) => {
                let facts = TransferFacts {
                    transaction_id: &completed.transaction_id,
                    from_account: &completed.from_account,
                    to_account: &completed.to_account,
                    amount_minor: completed.amount_minor,
                    currency: &completed.currency,
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
        }
    }

    fn transfer(&self, transaction_id: &str) -> anyhow::Result<Option<TransferRow>> {
        match self.out.transfers.get(transaction_id) {
            Some(row) => Ok(Some(row.clone())),
            None => self.rows.transfer(transaction_id),
        }
    }

    /// A transfer the source partition already debited (same log, so already folded).
    fn known_transfer(&self, transaction_id: &str) -> anyhow::Result<TransferRow> {
        self.transfer(transaction_id)?.with_context(|| {
            format!("transfer {transaction_id} settles or refunds without a debit")
        })
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
            sequence: 0,
            partition: at.partition,
            index: at.index,
            timestamp_ms: at.timestamp_ms,
            opened_index: at.index,
            opened_timestamp_ms: at.timestamp_ms,
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
        ensure!(
            row.allow_negative_balance || row.balance_minor >= 0,
            "account {account_id:?} would go negative: the event log and the fold disagree"
        );
        row.sequence += 1;
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

    /// The transfer's next state (a new version of its row).
    fn set_transfer_state(
        &mut self,
        transfer: &TransferFacts<'_>,
        state: TransferState,
        reject_reason: &str,
    ) -> anyhow::Result<()> {
        let previous = self.transfer(transfer.transaction_id)?;
        if let Some(previous) = &previous {
            ensure!(
                !previous.state.is_final(),
                "transfer {} changes state after its final state {:?}",
                transfer.transaction_id,
                previous.state
            );
        }
        let at = self.at;
        let row = TransferRow {
            transaction_id: transfer.transaction_id.to_owned(),
            from_account: transfer.from_account.to_owned(),
            to_account: transfer.to_account.to_owned(),
            amount_minor: transfer.amount_minor,
            currency: transfer.currency.to_owned(),
            state,
            reject_reason: reject_reason.to_owned(),
            version: previous.map_or(1, |previous| previous.version + 1),
            partition: at.partition,
            index: at.index,
            timestamp_ms: at.timestamp_ms,
        };
        self.out.transfer_changes.push(row.clone());
        self.out
            .transfers
            .insert(transfer.transaction_id.to_owned(), row);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proto::v1::{AccountOpened, TransferCompleted, TransferRejected};

    use super::*;

    #[derive(Default)]
    struct MemRows {
        balances: HashMap<String, BalanceRow>,
        transfers: HashMap<String, TransferRow>,
    }

    impl Rows for MemRows {
        fn balance(&self, account_id: &str) -> anyhow::Result<Option<BalanceRow>> {
            Ok(self.balances.get(account_id).cloned())
        }
        fn transfer(&self, transaction_id: &str) -> anyhow::Result<Option<TransferRow>> {
            Ok(self.transfers.get(transaction_id).cloned())
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
            })),
        }
    }

    fn at(index: u64) -> BlockPosition {
        BlockPosition {
            partition: 0,
            index,
            timestamp_ms: 1_000 + index,
        }
    }

    #[test]
    fn a_block_chains_changes_of_one_account() {
        let mut rows = MemRows::default();
        let out = fold_block(&rows, at(1), &[open("issuer", true), open("alice", false)]).unwrap();
        assert!(out.changes.is_empty());
        rows.apply(out);
        let out = fold_block(
            &rows,
            at(2),
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
        assert_eq!(out.transfers["t2"].state, TransferState::Completed);
        assert_eq!(out.transfers["t2"].version, 1);
    }

    #[test]
    fn cross_partition_transfers_fold_from_both_logs() {
        use proto::v1::{TransferCredited, TransferDebited, TransferRefunded, TransferSettled};
        let mut rows = MemRows::default();
        rows.apply(fold_block(&rows, at(1), &[open("src", true), open("dst", false)]).unwrap());
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
            })),
        };
        rows.apply(fold_block(&rows, at(2), &[credit]).unwrap());
        assert_eq!(rows.balances["dst"].balance_minor, 200);
        assert!(!rows.transfers.contains_key("x"));
        rows.apply(fold_block(&rows, at(3), &[debit("x")]).unwrap());
        assert_eq!(rows.transfers["x"].state, TransferState::InFlight);
        let settled = LedgerEvent {
            event: Some(PbEvent::TransferSettled(TransferSettled {
                transaction_id: "x".into(),
                credit_index: 2,
            })),
        };
        rows.apply(fold_block(&rows, at(4), &[settled]).unwrap());
        assert_eq!(rows.transfers["x"].state, TransferState::Completed);
        assert_eq!(rows.transfers["x"].version, 2);
        assert_eq!(rows.balances["src"].balance_minor, -200);
        // A refused credit: the source refunds, the transfer ends rejected.
        rows.apply(fold_block(&rows, at(5), &[debit("y")]).unwrap());
        let refunded = LedgerEvent {
            event: Some(PbEvent::TransferRefunded(TransferRefunded {
                transaction_id: "y".into(),
                reason: "ACCOUNT_NOT_FOUND".into(),
                field: "to_account".into(),
                credit_index: 9,
            })),
        };
        let out = fold_block(&rows, at(6), &[refunded]).unwrap();
        assert_eq!(out.changes[0].1.delta_minor, 200);
        rows.apply(out);
        assert_eq!(rows.balances["src"].balance_minor, -200);
        assert_eq!(rows.balances["src"].sequence, 3);
        assert_eq!(rows.transfers["y"].state, TransferState::Rejected);
    }

    #[test]
    fn rejections_move_nothing_and_inconsistencies_stop_the_fold() {
        let mut rows = MemRows::default();
        rows.apply(fold_block(&rows, at(1), &[open("a", false), open("b", false)]).unwrap());
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
            })),
        };
        let out = fold_block(&rows, at(2), &[rejected]).unwrap();
        assert!(out.changes.is_empty());
        assert_eq!(out.transfers["t"].reject_reason, "INSUFFICIENT_FUNDS");
        // An ordinary account going negative means the log and the fold disagree.
        assert!(fold_block(&rows, at(3), &[completed("t3", "a", "b", 1)]).is_err());
        assert!(fold_block(&rows, at(3), &[open("a", false)]).is_err());
        assert!(fold_block(&rows, at(3), &[LedgerEvent { event: None }]).is_err());
    }
}
