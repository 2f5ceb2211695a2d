//! The `records` column family: every transfer and credit record a partition decided, by
//! transaction id, kept forever (the idempotency contract), so that the ledger in memory
//! holds only accounts and in-flight transfers (`ledger::Ledger::keep_only_in_flight`).
//!
//! - Key: partition u32 BE | transaction id u128 BE (20 bytes): a partition's records are one
//!   key range, and a point lookup of a new id is answered by the bloom filters.
//! - Value: version u64 BE | postcard `ledger::Record`. The version is the log index of the
//!   record's last change ([`ledger::Record::version`]).
//! - Written with RocksDB merges whose operator keeps the highest version, so writes of one
//!   record commute: the apply path (a settle) and a follower rebuilding records from fetched
//!   events may write versions of one record in either order and the newest stays.
//!
//! Written in the apply batch together with the events and the applied index, so the
//! records on disk are those of the applied log (plus, on a follower catching up, records of
//! fetched events ahead of it, which `ledger::decide_with` ignores by their creation index).

use anyhow::Context;
use ledger::Record;

/// Length of a record's key.
pub const KEY_BYTES: usize = 20;

/// Key of a record.
pub fn key(partition: u32, transaction_id: u128) -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    key[..4].copy_from_slice(&partition.to_be_bytes());
    key[4..].copy_from_slice(&transaction_id.to_be_bytes());
    key
}

/// A record's stored value.
pub fn encode(record: &Record) -> Vec<u8> {
    let value = record.version().to_be_bytes().to_vec();
    postcard::to_extend(record, value).expect("serialising to a Vec cannot fail")
}

/// A stored value's record.
pub fn decode(value: &[u8]) -> anyhow::Result<Record> {
    let body = value
        .get(8..)
        .context("a stored record shorter than its version")?;
    postcard::from_bytes(body).context("a stored record is corrupt")
}

fn version_of(value: &[u8]) -> u64 {
    value.get(..8).map_or(0, |bytes| {
        u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
    })
}

/// The merge operator's name (stored in the column family's options).
pub const MERGE_OPERATOR: &str = "wallet.record.newest_version";

/// The merge operator: of the existing value and the operands, the one with the highest
/// version (the last of equals: equal versions of one record are equal).
pub fn newest_version(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    let mut newest: Option<&[u8]> = existing;
    for operand in operands {
        if newest.is_none_or(|current| version_of(operand) >= version_of(current)) {
            newest = Some(operand);
        }
    }
    newest.map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{
        Currency, EntryMeta, Settlement, TransferCommand, TransferRecord, TransferStatus,
    };

    fn in_flight() -> TransferRecord {
        TransferRecord {
            transfer: TransferCommand {
                transaction_id: uuid::Uuid::from_u128(7),
                from: "alice".into(),
                to: "bob".into(),
                amount_minor: 5,
                currency: Currency::parse("USD").unwrap(),
            },
            status: TransferStatus::InFlight,
            meta: EntryMeta {
                index: 3,
                timestamp_ms: 1,
            },
            settlement: None,
        }
    }

    #[test]
    fn a_record_round_trips_with_its_version_first() {
        let settled = Record::Transfer(TransferRecord {
            status: TransferStatus::Completed,
            settlement: Some(Settlement {
                meta: EntryMeta {
                    index: 9,
                    timestamp_ms: 2,
                },
                credit_index: 4,
            }),
            ..in_flight()
        });
        let value = encode(&settled);
        assert_eq!(version_of(&value), 9);
        assert_eq!(decode(&value).unwrap(), settled);
        assert!(decode(&value[..5]).is_err());
        assert!(key(1, 7) < key(1, 8) && key(1, u128::MAX) < key(2, 0));
    }

    #[test]
    fn the_newest_version_wins_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.set_merge_operator_associative(MERGE_OPERATOR, newest_version);
        let db = rocksdb::DB::open(&options, dir.path()).unwrap();
        let older = encode(&Record::Transfer(in_flight()));
        let newer = encode(&Record::Transfer(TransferRecord {
            status: TransferStatus::Completed,
            settlement: Some(Settlement {
                meta: EntryMeta {
                    index: 11,
                    timestamp_ms: 2,
                },
                credit_index: 4,
            }),
            ..in_flight()
        }));
        db.merge(b"a", &older).unwrap();
        db.merge(b"a", &newer).unwrap();
        db.merge(b"b", &newer).unwrap();
        db.merge(b"b", &older).unwrap();
        db.flush().unwrap();
        db.merge(b"b", &older).unwrap();
        assert_eq!(db.get(b"a").unwrap().unwrap(), newer);
        assert_eq!(db.get(b"b").unwrap().unwrap(), newer);
        db.compact_range::<&[u8], &[u8]>(None, None);
        assert_eq!(db.get(b"b").unwrap().unwrap(), newer);
    }
}
