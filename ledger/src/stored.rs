//! Records the ledger keeps outside memory.
//!
//! The contract keeps every transaction id forever, so the records of decided transfers and
//! credits grow with history. A [`crate::Ledger`] on a write node holds in memory only its
//! accounts and its in-flight transfers ([`crate::Ledger::keep_only_in_flight`]); every
//! record is kept on disk by the edge, which looks up the ids of the commands it is about to
//! decide and hands them to [`crate::decide_with`] as a [`Stored`]. Deciding stays
//! a pure function of (state, stored records, command).

use std::collections::HashMap;

use crate::domain::legs::{LegsRecord, LegsStatus};
use crate::domain::{
    CreditRecord, Event, Hold, HoldState, Outcome, Settlement, TransferRecord, TransferStatus,
};

/// The record a partition keeps for a transaction id: one per id per partition (a transfer
/// it was the source of, a credit it was the target of, or a multi-leg transfer: only one).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Record {
    Transfer(TransferRecord),
    Credit(CreditRecord),
    Legs(LegsRecord),
}

impl Record {
    pub fn transaction_id(&self) -> uuid::Uuid {
        match self {
            Record::Transfer(record) => record.transfer.transaction_id,
            Record::Credit(record) => record.transfer.transaction_id,
            Record::Legs(record) => record.command.transaction_id,
        }
    }

    /// The log index of the entry that created the record.
    pub fn created_at(&self) -> u64 {
        match self {
            Record::Transfer(record) => record.meta.index,
            Record::Credit(record) => record.meta.index,
            Record::Legs(record) => record.meta.index,
        }
    }

    /// Whether the record can still change (an in-flight transfer, which a settle finishes;
    /// a pending hold; a hold being captured; a multi-leg part prepared, or decided on the
    /// home): such records live in the ledger's memory and snapshots, and only their final
    /// form is stored.
    pub fn is_live(&self) -> bool {
        match self {
            Record::Transfer(record) => record.status.is_live(),
            Record::Legs(record) => record.status.is_live(),
            Record::Credit(_) => false,
        }
    }

    /// The record an outcome reports, if it reports one (a transfer's or a credit's).
    pub fn of_outcome(outcome: &Outcome) -> Option<Record> {
        match outcome {
            Outcome::Transfer(record) => Some(Record::Transfer(record.clone())),
            Outcome::Credit(record) => Some(Record::Credit(record.clone())),
            Outcome::Legs(record) => Some(Record::Legs(record.clone())),
            _ => None,
        }
    }

    /// The record an event leaves for its transaction id, given the record it finds (only
    /// an event that changes a record finds one: a settle or refund, a hold's capture, void
    /// or expiry). For rebuilding the stored records from an event log; `None` for events
    /// that create no record.
    pub fn after_event(event: &Event, previous: Option<&Record>) -> Result<Option<Record>, String> {
        if let Some(new) = Outcome::of_new(event) {
            return Ok(Record::of_outcome(&new));
        }
        let Some(transaction_id) = event.transaction_id() else {
            return Ok(None);
        };
        let after = match previous {
            Some(Record::Transfer(previous)) => record_after(previous, event).map(Record::Transfer),
            Some(Record::Legs(previous)) => legs_record_after(previous, event).map(Record::Legs),
            _ => {
                return Err(format!(
                    "an event changes {transaction_id}, which has no transfer record"
                ));
            }
        };
        after
            .map(Some)
            .ok_or_else(|| format!("an event cannot follow the record of {transaction_id}"))
    }
}

/// The record an event that changes a live record leaves of it: a settle or refund of an
/// in-flight transfer or of a hold being captured; a capture, void or expiry of a pending
/// hold. `None` if the event does not change a record or cannot follow this one.
pub(crate) fn record_after(previous: &TransferRecord, event: &Event) -> Option<TransferRecord> {
    let settlement = |meta, credit_index| Some(Settlement { meta, credit_index });
    let hold = previous.status.hold().copied();
    let with_state = |state| hold.map(|hold| TransferStatus::Hold(Hold { state, ..hold }));
    let pending = hold.is_some_and(|hold| hold.is_pending());
    let (status, settlement) = match (event, previous.status) {
        (
            Event::TransferSettled {
                credit_index, meta, ..
            },
            TransferStatus::InFlight,
        ) => (TransferStatus::Completed, settlement(*meta, *credit_index)),
        (
            Event::TransferRefunded {
                reason,
                credit_index,
                meta,
                ..
            },
            TransferStatus::InFlight,
        ) => (
            TransferStatus::Rejected(*reason),
            settlement(*meta, *credit_index),
        ),
        (
            Event::TransferSettled {
                credit_index, meta, ..
            },
            TransferStatus::Hold(Hold {
                state:
                    HoldState::Capturing {
                        amount_minor,
                        meta: capture,
                    },
                ..
            }),
        ) => (
            with_state(HoldState::Captured {
                amount_minor,
                meta: capture,
            })?,
            settlement(*meta, *credit_index),
        ),
        (
            Event::TransferRefunded {
                reason,
                credit_index,
                meta,
                ..
            },
            TransferStatus::Hold(Hold {
                state: HoldState::Capturing { amount_minor, .. },
                ..
            }),
        ) => (
            with_state(HoldState::CaptureRefused {
                amount_minor,
                reason: *reason,
            })?,
            settlement(*meta, *credit_index),
        ),
        (
            Event::HoldCaptured {
                amount_minor, meta, ..
            },
            _,
        ) if pending => (
            with_state(HoldState::Captured {
                amount_minor: *amount_minor,
                meta: *meta,
            })?,
            None,
        ),
        (
            Event::HoldCaptureDebited {
                amount_minor, meta, ..
            },
            _,
        ) if pending => (
            with_state(HoldState::Capturing {
                amount_minor: *amount_minor,
                meta: *meta,
            })?,
            None,
        ),
        (Event::HoldVoided { meta, .. }, _) if pending => {
            (with_state(HoldState::Voided { meta: *meta })?, None)
        }
        (Event::HoldExpired { meta, .. }, _) if pending => {
            (with_state(HoldState::Expired { meta: *meta })?, None)
        }
        _ => return None,
    };
    Some(TransferRecord {
        status,
        settlement,
        ..previous.clone()
    })
}

/// The record a step of a multi-leg transfer across partitions leaves of a live one: a
/// resolve of a prepared part (final, or decided on the home), a finish of a decided home.
/// `None` if the event does not change a record or cannot follow this one.
pub(crate) fn legs_record_after(previous: &LegsRecord, event: &Event) -> Option<LegsRecord> {
    let status = match (event, previous.status) {
        (
            Event::LegsResolved {
                legs,
                part,
                decision,
                ..
            },
            LegsStatus::Prepared { part: prepared },
        ) if *legs == previous.command && *part == prepared => {
            if part.is_home() {
                LegsStatus::Decided(*decision)
            } else {
                decision.status()
            }
        }
        (Event::LegsFinished { .. }, LegsStatus::Decided(decision)) => decision.status(),
        _ => return None,
    };
    // Keeps the creating entry's position, as a settled transfer does.
    Some(LegsRecord {
        status,
        ..previous.clone()
    })
}

/// Records looked up outside the ledger's memory, by transaction id
/// ([`uuid::Uuid::as_u128`]).
pub trait Stored {
    fn record(&self, transaction_id: u128) -> Option<&Record>;
}

/// Nothing outside memory: a ledger that holds every record (tests, tools).
pub struct NothingStored;

impl Stored for NothingStored {
    fn record(&self, _: u128) -> Option<&Record> {
        None
    }
}

impl Stored for HashMap<u128, Record> {
    fn record(&self, transaction_id: u128) -> Option<&Record> {
        self.get(&transaction_id)
    }
}
