//! Projection rows to `wallet.v1` messages.

use event_codec::pb::annotations_to_fields;
use ledger::{Currency, format_minor};
use proto::v1 as pb;

use crate::db::{BalanceRow, HistoryRow, TransferRow, TransferState};

/// The position of a row, as a consistency token (`proto::token`).
pub fn token(partition: u32, index: u64) -> String {
    proto::token::position(partition, index)
}

/// Exact decimal text of an amount; the minor units as a fallback for a currency this build
/// does not know (the write node validated it, so that means a newer ISO table there).
pub fn decimal(minor: i128, currency: &str) -> String {
    match Currency::parse(currency) {
        Ok(currency) => format_minor(minor, currency),
        Err(_) => minor.to_string(),
    }
}

/// i64 for the `*_minor` wire fields; the decimal string next to it is always exact.
pub fn saturating_i64(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

pub fn balance(row: &BalanceRow) -> pb::Balance {
    pb::Balance {
        account_id: row.account_id.clone(),
        currency: row.currency.clone(),
        allow_negative_balance: row.allow_negative_balance,
        balance: decimal(row.balance_minor, &row.currency),
        balance_minor: saturating_i64(row.balance_minor),
        sequence: row.sequence,
        partition: row.partition,
        index: row.index,
        timestamp_ms: row.timestamp_ms,
        held: decimal(row.held_minor, &row.currency),
        available: decimal(row.balance_minor - row.held_minor, &row.currency),
        status: event_codec::pb::account_status_to_pb(row.settings.status) as i32,
        overdraft_limit: if row.allow_negative_balance {
            String::new()
        } else {
            decimal(
                i128::from(row.settings.overdraft_limit_minor),
                &row.currency,
            )
        },
        // Not in the row: reads join them from the `accounts` column family
        // (`query::annotated`, and once per watch).
        reference: String::new(),
        metadata: Default::default(),
    }
}

/// The account as it was right after `change` (a past state rebuilt from history).
pub fn balance_after(row: &BalanceRow, change: &HistoryRow) -> pb::Balance {
    pb::Balance {
        balance: decimal(change.balance_after_minor, &row.currency),
        balance_minor: saturating_i64(change.balance_after_minor),
        sequence: change.sequence,
        partition: change.partition,
        index: change.index,
        timestamp_ms: change.timestamp_ms,
        // History keeps balances only: what was held then is not known.
        held: String::new(),
        available: String::new(),
        ..balance(row)
    }
}

/// The account as it was when opened, before any change.
pub fn balance_opened(row: &BalanceRow) -> pb::Balance {
    pb::Balance {
        balance: decimal(0, &row.currency),
        balance_minor: 0,
        sequence: 0,
        index: row.opened_index,
        timestamp_ms: row.opened_timestamp_ms,
        held: decimal(0, &row.currency),
        available: decimal(0, &row.currency),
        ..balance(row)
    }
}

pub fn snapshot(row: &BalanceRow) -> pb::BalanceUpdate {
    pb::BalanceUpdate {
        snapshot: true,
        position: token(row.partition, row.index),
        balance: Some(balance(row)),
        ..Default::default()
    }
}

/// A change as pushed to watchers; `row` is only used for the account's fixed fields.
pub fn change(row: &BalanceRow, change: &HistoryRow) -> pb::BalanceUpdate {
    pb::BalanceUpdate {
        snapshot: false,
        balance: Some(balance_after(row, change)),
        delta_minor: saturating_i64(change.delta_minor),
        delta: decimal(change.delta_minor, &row.currency),
        transaction_id: change.transaction_id.clone(),
        counterparty: change.counterparty.clone(),
        position: token(change.partition, change.index),
    }
}

/// A history entry; `transfer` is the transfer that made the change, for its annotations.
pub fn history_entry(
    row: &BalanceRow,
    change: &HistoryRow,
    transfer: Option<&TransferRow>,
) -> pb::HistoryEntry {
    let (reference, metadata) =
        annotations_to_fields(transfer.and_then(|row| row.annotations.as_deref()));
    pb::HistoryEntry {
        sequence: change.sequence,
        transaction_id: change.transaction_id.clone(),
        delta_minor: saturating_i64(change.delta_minor),
        delta: decimal(change.delta_minor, &row.currency),
        balance_after_minor: saturating_i64(change.balance_after_minor),
        balance_after: decimal(change.balance_after_minor, &row.currency),
        counterparty: change.counterparty.clone(),
        currency: row.currency.clone(),
        position: token(change.partition, change.index),
        timestamp_ms: change.timestamp_ms,
        reference,
        metadata,
    }
}

pub fn transfer_update(row: &TransferRow) -> pb::TransferUpdate {
    // `state` is the deprecated enum in its own numbering; `status` is wallet.v1's, which
    // the write node's GetTransfer answers too.
    let (state, status) = match row.state {
        TransferState::InFlight => (pb::TransferState::InFlight, pb::TransferStatus::InFlight),
        TransferState::Completed => (pb::TransferState::Completed, pb::TransferStatus::Completed),
        TransferState::Rejected => (pb::TransferState::Rejected, pb::TransferStatus::Rejected),
        TransferState::Pending => (pb::TransferState::Pending, pb::TransferStatus::Pending),
        TransferState::Voided => (pb::TransferState::Voided, pb::TransferStatus::Voided),
        TransferState::Expired => (pb::TransferState::Expired, pb::TransferStatus::Expired),
    };
    let (reference, metadata) = annotations_to_fields(row.annotations.as_deref());
    // A multi-leg transfer shows its legs instead of one from, to and amount.
    let multi_leg = !row.legs.is_empty();
    let single = |text: &String| {
        if multi_leg {
            String::new()
        } else {
            text.clone()
        }
    };
    #[allow(deprecated)] // `state` is still filled for clients built before `status`
    pb::TransferUpdate {
        transaction_id: row.transaction_id.clone(),
        from_account: single(&row.from_account),
        to_account: single(&row.to_account),
        amount: single(&decimal(i128::from(row.amount_minor), &row.currency)),
        amount_minor: row.amount_minor,
        currency: row.currency.clone(),
        state: state as i32,
        reject_reason: row.reject_reason.clone(),
        version: row.version,
        is_final: row.state.is_final(),
        position: token(row.partition, row.index),
        timestamp_ms: row.timestamp_ms,
        status: status as i32,
        reference,
        metadata,
        legs: row
            .legs
            .iter()
            .map(|leg| pb::TransferLeg {
                from_account: leg.from_account.clone(),
                to_account: leg.to_account.clone(),
                amount: decimal(i128::from(leg.amount_minor), &row.currency),
                currency: row.currency.clone(),
            })
            .collect(),
        rejected_leg: row.rejected_leg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_decimals() {
        assert_eq!(decimal(-1234, "USD"), "-12.34");
        assert_eq!(decimal(5, "JPY"), "5");
        assert_eq!(saturating_i64(i128::MAX), i64::MAX);
    }
}
