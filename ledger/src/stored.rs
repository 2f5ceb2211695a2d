//! Records the ledger keeps outside memory.
//!
//! The contract keeps every transaction id forever, so the records of decided transfers and
//! credits grow with history. A [`crate::Ledger`] on a write node holds in memory only its
//! accounts and its in-flight transfers ([`crate::Ledger::keep_only_in_flight`]); every
//! record is kept on disk by the edge, which looks up the ids of the commands it is about to
//! decide and hands them to [`crate::decide_with`] as a [`Stored`]. Deciding stays
//! a pure function of (state, stored records, command).

use std::collections::HashMap;

use crate::domain::{CreditRecord, Event, Outcome, Settlement, TransferRecord, TransferStatus};

/// The record a partition keeps for a transaction id: one per id per partition (a transfer
/// it was the source of, or a credit it was the target of, never both).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Record {
    Transfer(TransferRecord),
    Credit(CreditRecord),
}

impl Record {
    pub fn transaction_id(&self) -> uuid::Uuid {
        match self {
            Record::Transfer(record) => record.transfer.transaction_id,
            Record::Credit(record) => record.transfer.transaction_id,
        }
    }

    /// The log index of the entry that created the record.
    pub fn created_at(&self) -> u64 {
        match self {
            Record::Transfer(record) => record.meta.index,
            Record::Credit(record) => record.meta.index,
        }
    }

    /// Whether the record can still change (an in-flight transfer, which a settle finishes).
    pub fn is_in_flight(&self) -> bool {
        matches!(self, Record::Transfer(record) if record.status == TransferStatus::InFlight)
    }

    /// The record an outcome reports, if it reports one (a transfer's or a credit's).
    pub fn of_outcome(outcome: &Outcome) -> Option<Record> {
        match outcome {
            Outcome::Transfer(record) => Some(Record::Transfer(record.clone())),
            Outcome::Credit(record) => Some(Record::Credit(record.clone())),
            _ => None,
        }
    }

    /// The record an event leaves for its transaction id, given the record it finds (only a
    /// settle or refund finds one: the in-flight transfer it finishes). For rebuilding the
    /// stored records from an event log; `None` for events that create no record.
    pub fn after_event(event: &Event, previous: Option<&Record>) -> Result<Option<Record>, String> {
        let (Event::TransferSettled { transaction_id, .. }
        | Event::TransferRefunded { transaction_id, .. }) = event
        else {
            return Ok(Outcome::of_new(event).as_ref().and_then(Record::of_outcome));
        };
        let Some(Record::Transfer(previous)) = previous else {
            return Err(format!(
                "settle of {transaction_id}, which has no transfer record"
            ));
        };
        if previous.status != TransferStatus::InFlight {
            return Err(format!(
                "settle of {transaction_id}, which is not in flight"
            ));
        }
        Ok(settled(previous, event).map(Record::Transfer))
    }
}

/// The record a settle or refund leaves of the in-flight transfer it finishes; `None` for
/// any other event.
pub(crate) fn settled(in_flight: &TransferRecord, event: &Event) -> Option<TransferRecord> {
    let (status, meta, credit_index) = match event {
        Event::TransferSettled {
            credit_index, meta, ..
        } => (TransferStatus::Completed, meta, credit_index),
        Event::TransferRefunded {
            reason,
            credit_index,
            meta,
            ..
        } => (TransferStatus::Rejected(*reason), meta, credit_index),
        _ => return None,
    };
    Some(TransferRecord {
        status,
        settlement: Some(Settlement {
            meta: *meta,
            credit_index: *credit_index,
        }),
        ..in_flight.clone()
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
