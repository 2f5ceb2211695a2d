//! The `records` column family: every transfer and credit record a partition decided, by
//! transaction id, kept forever (the idempotency contract), so that the ledger in memory
//! holds only accounts and in-flight transfers (`ledger::Ledger::keep_only_in_flight`).
//!
//! - Key: partition u32 BE | transaction id u128 BE (20 bytes): a partition's records are one
//!   key range, and a point lookup of a new id is answered by the bloom filters.
//! - Value: postcard `ledger::Record`, the record as finished, in the plain layout of
//!   `ledger::wire` (what every release wrote before annotations); a record whose transfer
//!   carries annotations is tagged (`ledger::wire::to_tagged_vec`). A transfer in flight is not
//!   written: it lives in the ledger (and its snapshots) until settled, and then its one
//!   final record is. Every record is therefore written once, by every replica with the same
//!   value; a follower rebuilding records from fetched events may write one again, with the
//!   same value, in any order.
//!
//! Written in the apply batch together with the events and the applied index, so the
//! records on disk are those of the applied log (plus, on a follower catching up, records of
//! fetched events ahead of it, which the store leaves out of what it decides with by their
//! creation index).

use anyhow::Context;
use ledger::Record;
use ledger::wire;

/// Length of a record's key.
pub const KEY_BYTES: usize = 20;

/// Key of a record.
pub fn key(partition: u32, transaction_id: u128) -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    key[..4].copy_from_slice(&partition.to_be_bytes());
    key[4..].copy_from_slice(&transaction_id.to_be_bytes());
    key
}

/// A record's stored value (also what a leader sends with a snapshot).
pub fn encode(record: &Record) -> Vec<u8> {
    wire::to_tagged_vec(record)
}

/// A stored value's record.
pub fn decode(value: &[u8]) -> anyhow::Result<Record> {
    wire::from_tagged_slice(value).context("a stored record is corrupt")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{
        Currency, EntryMeta, Settlement, TransferCommand, TransferRecord, TransferStatus,
    };

    #[test]
    fn a_record_round_trips_and_keys_sort_by_partition_then_id() {
        let settled = Record::Transfer(TransferRecord {
            transfer: TransferCommand {
                transaction_id: uuid::Uuid::from_u128(7),
                from: "alice".into(),
                to: "bob".into(),
                amount_minor: 5,
                currency: Currency::parse("USD").unwrap(),
                annotations: None,
            },
            status: TransferStatus::Completed,
            meta: EntryMeta {
                index: 3,
                timestamp_ms: 1,
            },
            settlement: Some(Settlement {
                meta: EntryMeta {
                    index: 9,
                    timestamp_ms: 2,
                },
                credit_index: 4,
            }),
        });
        let value = encode(&settled);
        assert_eq!(decode(&value).unwrap(), settled);
        assert!(decode(&value[..5]).is_err());
        assert!(key(1, 7) < key(1, 8) && key(1, u128::MAX) < key(2, 0));
    }
}
