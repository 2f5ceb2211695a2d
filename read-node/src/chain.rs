//! The event chain check on ingest: every event block a write node streams carries
//! `chain_hash` = BLAKE3-derive-key("wallet ledger event chain v1"; previous block's chain hash,
//! index, postcard(EventBlock)) (`event_codec::codec`). The read node rebuilds the stored block
//! from the streamed events (`event_codec::pb::event_from_pb`, as `walletctl replay
//! --endpoint` does), hashes it with the write node's own `codec::encode_events` and compares.
//! A block that fails is never folded: ingest reports it and fails over to another write node.
//!
//! A block with an empty `chain_hash` is a progress marker (entries without events moved the
//! applied index; the write node stores no block for them, so they are not in the chain): it
//! must carry no events, and it leaves the chain where it was.

use anyhow::Context as _;
use event_codec::codec::{self, EventBlock};

use crate::db::ChainHash;

// The read node's genesis and hash width are the write node's.
const _: () = assert!(crate::db::CHAIN_GENESIS.len() == codec::CHAIN_GENESIS.len());
const _: () = {
    let mut i = 0;
    while i < codec::CHAIN_GENESIS.len() {
        assert!(crate::db::CHAIN_GENESIS[i] == codec::CHAIN_GENESIS[i]);
        i += 1;
    }
};

/// What the chain says about one streamed block.
#[derive(Debug, PartialEq, Eq)]
pub enum Link {
    /// An event block that follows `previous`: its chain hash, the next block's `previous`.
    Event(ChainHash),
    /// A progress marker: no events, no hash; the chain stays where it was.
    Marker,
}

/// Checks a streamed block against the chain hash of the partition's previous event block.
/// An error is a block that must not be folded (corrupt, forged, or from a write node whose
/// events this read node cannot rebuild).
pub fn check(
    previous: &ChainHash,
    index: u64,
    timestamp_ms: u64,
    events: &[proto::v1::LedgerEvent],
    chain_hash: &[u8],
) -> anyhow::Result<Link> {
    if chain_hash.is_empty() {
        anyhow::ensure!(
            events.is_empty(),
            "block {index} carries {} events but no chain hash",
            events.len()
        );
        return Ok(Link::Marker);
    }
    let sent: ChainHash = chain_hash.try_into().with_context(|| {
        format!(
            "block {index}: chain hash of {} bytes, not 32",
            chain_hash.len()
        )
    })?;
    let meta = ledger::EntryMeta {
        index,
        timestamp_ms,
    };
    let events = events
        .iter()
        .enumerate()
        .map(|(position, event)| {
            event_codec::pb::event_from_pb(meta, event)
                .with_context(|| format!("block {index} event {position} cannot be rebuilt"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (_, expected) = codec::encode_events(previous, &EventBlock { meta, events });
    anyhow::ensure!(
        expected == sent,
        "block {index}: its chain hash does not follow from the previous block's and its \
         events (the block, or one before it, was changed, dropped or reordered)"
    );
    Ok(Link::Event(sent))
}

#[cfg(test)]
mod tests {
    use ledger::{Currency, EntryMeta, Event, TransferCommand};

    use super::*;

    fn meta(index: u64) -> EntryMeta {
        EntryMeta {
            index,
            timestamp_ms: 1_700_000_000_000 + index,
        }
    }

    /// Blocks as the write node stores them, and as its Subscribe streams them.
    fn stored(
        previous: &ChainHash,
        index: u64,
        events: Vec<Event>,
    ) -> (ChainHash, Vec<proto::v1::LedgerEvent>) {
        let pb = events.iter().map(event_codec::pb::event_to_pb).collect();
        let (_, chain) = codec::encode_events(
            previous,
            &EventBlock {
                meta: meta(index),
                events,
            },
        );
        (chain, pb)
    }

    fn transfer() -> TransferCommand {
        TransferCommand {
            transaction_id: uuid::Uuid::from_u128(7),
            from: "alice".into(),
            to: "bob".into(),
            amount_minor: 250,
            currency: Currency::parse("EUR").expect("EUR"),
            annotations: None,
        }
    }

    #[test]
    fn streamed_blocks_verify_against_the_write_nodes_chain() {
        let opened = vec![
            Event::AccountOpened {
                account_id: "alice".into(),
                currency: Currency::parse("EUR").expect("EUR"),
                allow_negative_balance: true,
                annotations: None,
            },
            Event::AccountOpened {
                account_id: "bob".into(),
                currency: Currency::parse("EUR").expect("EUR"),
                allow_negative_balance: false,
                annotations: None,
            },
        ];
        let (head_1, block_1) = stored(&crate::db::CHAIN_GENESIS, 2, opened);
        let moved = vec![
            Event::TransferCompleted {
                transfer: transfer(),
                meta: meta(5),
            },
            Event::TransferDebited {
                transfer: TransferCommand {
                    transaction_id: uuid::Uuid::from_u128(8),
                    ..transfer()
                },
                meta: meta(5),
            },
            Event::TransferRefunded {
                transaction_id: uuid::Uuid::from_u128(8),
                reason: ledger::RejectReason::TransactionIdReused,
                credit_index: 3,
                meta: meta(5),
            },
        ];
        let (head_2, block_2) = stored(&head_1, 5, moved);
        let check_2 = |previous: &ChainHash, index, timestamp_ms, events: &[_], hash: &[u8]| {
            check(previous, index, timestamp_ms, events, hash)
        };
        // The genuine stream verifies, link by link.
        assert_eq!(
            check(
                &crate::db::CHAIN_GENESIS,
                2,
                meta(2).timestamp_ms,
                &block_1,
                &head_1
            )
            .unwrap(),
            Link::Event(head_1)
        );
        assert_eq!(
            check_2(&head_1, 5, meta(5).timestamp_ms, &block_2, &head_2).unwrap(),
            Link::Event(head_2)
        );
        // Another previous hash, index, timestamp, amount or reason: refused.
        assert!(check_2(&head_2, 5, meta(5).timestamp_ms, &block_2, &head_2).is_err());
        assert!(check_2(&head_1, 6, meta(5).timestamp_ms, &block_2, &head_2).is_err());
        assert!(check_2(&head_1, 5, meta(5).timestamp_ms + 1, &block_2, &head_2).is_err());
        let mut changed = block_2.clone();
        if let Some(proto::v1::ledger_event::Event::TransferCompleted(completed)) =
            &mut changed[0].event
        {
            completed.amount_minor += 1;
        } else {
            panic!("first event is the completed transfer");
        }
        assert!(check_2(&head_1, 5, meta(5).timestamp_ms, &changed, &head_2).is_err());
        // A dropped event, a truncated hash, events without a hash: refused.
        assert!(check_2(&head_1, 5, meta(5).timestamp_ms, &block_2[1..], &head_2).is_err());
        assert!(check_2(&head_1, 5, meta(5).timestamp_ms, &block_2, &head_2[..31]).is_err());
        assert!(check_2(&head_1, 5, meta(5).timestamp_ms, &block_2, &[]).is_err());
        // A progress marker: no events, no hash, the chain does not move.
        assert_eq!(check_2(&head_2, 9, 0, &[], &[]).unwrap(), Link::Marker);
    }

    /// The chain function pinned to a value, so a change on either side of the wire (the
    /// write node's hash or this rebuild of its blocks) fails here, not in production.
    #[test]
    fn the_chain_hash_is_pinned() {
        let (head, events) = stored(
            &crate::db::CHAIN_GENESIS,
            3,
            vec![Event::AccountOpened {
                account_id: "acct-3".into(),
                currency: Currency::parse("USD").expect("USD"),
                allow_negative_balance: false,
                annotations: None,
            }],
        );
        assert_eq!(
            check(
                &crate::db::CHAIN_GENESIS,
                3,
                meta(3).timestamp_ms,
                &events,
                &head
            )
            .unwrap(),
            Link::Event(head)
        );
        let hex: String = head.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(
            hex,
            "65195d8f75ce717d309bc4e9426234e76e8d2c8fad25081e892e789318af4676"
        );
    }
}
