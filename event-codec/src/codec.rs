//! What a raft entry carries and what an applied entry leaves in the event log.
//!
//! postcard (a compact, deterministic serde format) encodes both; there is no per-transfer
//! protobuf on the replication path. A leading version byte lets the format evolve; it also
//! names the layout of the transfers inside ([`ledger::wire`]): entries of format 1 and
//! blocks of format 2 hold plain transfers and are what release 0.2 wrote; entries of
//! format 2 and blocks of format 3 hold at least one annotated transfer.

use anyhow::{Context, bail};
use ledger::wire::{self, Layout};
use ledger::{Command, EntryMeta, Event};
use serde::{Deserialize, Serialize};

const ENTRY_FORMAT_V1: u8 = 1;
const ENTRY_FORMAT_V2_ANNOTATED: u8 = 2;
const EVENTS_FORMAT_V2: u8 = 2;
const EVENTS_FORMAT_V3_ANNOTATED: u8 = 3;

/// The layout of an entry of format `version`, if it is one this build reads.
fn entry_layout(version: u8) -> Option<Layout> {
    match version {
        ENTRY_FORMAT_V1 => Some(Layout::Plain),
        ENTRY_FORMAT_V2_ANNOTATED => Some(Layout::Annotated),
        _ => None,
    }
}

/// The layout of an event block of format `version`, if it is one this build reads.
fn events_layout(version: u8) -> Option<Layout> {
    match version {
        EVENTS_FORMAT_V2 => Some(Layout::Plain),
        EVENTS_FORMAT_V3_ANNOTATED => Some(Layout::Annotated),
        _ => None,
    }
}

/// The payload of one normal raft entry: a batch of client commands, stamped by the leader
/// with the commit time so no replica reads a clock while applying.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryPayload {
    pub timestamp_ms: u64,
    pub commands: Vec<Command>,
}

/// The events one applied entry produced, stored under the entry's index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBlock {
    pub meta: EntryMeta,
    pub events: Vec<Event>,
}

pub fn encode_entry(payload: &EntryPayload) -> Vec<u8> {
    let (layout, body) = wire::to_vec(payload);
    let version = match layout {
        Layout::Plain => ENTRY_FORMAT_V1,
        Layout::Annotated => ENTRY_FORMAT_V2_ANNOTATED,
    };
    let mut bytes = Vec::with_capacity(1 + body.len());
    bytes.push(version);
    bytes.extend(body);
    bytes
}

pub fn decode_entry(bytes: &[u8]) -> anyhow::Result<EntryPayload> {
    let (&version, body) = bytes.split_first().context("empty entry payload")?;
    let Some(layout) = entry_layout(version) else {
        bail!("unknown entry format {version}");
    };
    wire::from_slice(layout, body).context("entry payload is corrupt")
}

/// The leader's timestamp of an encoded entry, without decoding its commands (it is the
/// payload's first field). `None` for an empty entry (a new leader's) or a corrupt one.
pub fn entry_timestamp_ms(bytes: &[u8]) -> Option<u64> {
    let (&version, body) = bytes.split_first()?;
    entry_layout(version)?;
    postcard::take_from_bytes::<u64>(body)
        .ok()
        .map(|(timestamp_ms, _)| timestamp_ms)
}

/// A hash of the event log of one partition up to some block: `chain(i) = BLAKE3(chain of
/// the previous block, i, encoded block i)`. Every replica computes the same chain, the chain
/// head is part of the state digest, and changing, dropping or reordering any stored block
/// breaks every link after it.
pub type ChainHash = [u8; 32];

/// The chain value before the first block.
pub const CHAIN_GENESIS: ChainHash = [0; 32];

/// Domain separation of the chain hash (BLAKE3 derive-key mode); bump on any change.
const CHAIN_CONTEXT: &str = "wallet ledger event chain v1";
/// Domain separation of the partition state digest.
const PARTITION_DIGEST_CONTEXT: &str = "wallet ledger partition digest v1";

/// A stored event block with its chain hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlock {
    pub block: EventBlock,
    pub chain: ChainHash,
}

/// Why a stored block fails the chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the stored value is not an event block: {0}")]
    Malformed(String),
    #[error(
        "the block's hash does not follow from the previous block and its contents (the \
         block or an earlier one was changed, removed or reordered)"
    )]
    BrokenLink,
}

/// Stored form: `u8 version (2, or 3 when it holds annotations) | [u8; 32] chain |
/// postcard(EventBlock)`. Returns the bytes and the block's chain hash (the next block's
/// `previous`).
pub fn encode_events(previous: &ChainHash, block: &EventBlock) -> (Vec<u8>, ChainHash) {
    let (layout, body) = wire::to_vec(block);
    let chain = chain_hash(previous, block.meta.index, layout, &body);
    let mut bytes = Vec::with_capacity(1 + 32 + body.len());
    bytes.push(match layout {
        Layout::Plain => EVENTS_FORMAT_V2,
        Layout::Annotated => EVENTS_FORMAT_V3_ANNOTATED,
    });
    bytes.extend_from_slice(&chain);
    bytes.extend(body);
    (bytes, chain)
}

/// Decodes a stored block without checking its link (see `check_link`).
pub fn decode_events(bytes: &[u8]) -> anyhow::Result<StoredBlock> {
    let (layout, chain, body) = split_stored(bytes).map_err(anyhow::Error::msg)?;
    let block = wire::from_slice(layout, body).context("event block is corrupt")?;
    Ok(StoredBlock { block, chain })
}

/// Checks that the stored block at `index` follows `previous`; returns its chain hash.
pub fn check_link(previous: &ChainHash, index: u64, bytes: &[u8]) -> Result<ChainHash, ChainError> {
    let (layout, stored, body) = split_stored(bytes).map_err(ChainError::Malformed)?;
    if chain_hash(previous, index, layout, body) == stored {
        Ok(stored)
    } else {
        Err(ChainError::BrokenLink)
    }
}

/// Decodes a stored block after checking its link.
pub fn decode_linked(
    previous: &ChainHash,
    index: u64,
    bytes: &[u8],
) -> Result<StoredBlock, ChainError> {
    check_link(previous, index, bytes)?;
    let block =
        decode_events(bytes).map_err(|error| ChainError::Malformed(format!("{error:#}")))?;
    if block.block.meta.index != index {
        return Err(ChainError::Malformed(format!(
            "stored under index {index}, names index {}",
            block.block.meta.index
        )));
    }
    Ok(block)
}

/// The digest replicas compare: the ledger state and the event chain that produced it.
pub fn partition_digest(ledger_digest: &[u8; 32], chain_head: &ChainHash) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(PARTITION_DIGEST_CONTEXT);
    hasher.update(ledger_digest);
    hasher.update(chain_head);
    *hasher.finalize().as_bytes()
}

/// `layout` is hashed only when annotated (plain blocks chain as they always have): the
/// body means something else in the other layout, so changing the format byte must break
/// the link like changing any other byte.
fn chain_hash(previous: &ChainHash, index: u64, layout: Layout, body: &[u8]) -> ChainHash {
    let mut hasher = blake3::Hasher::new_derive_key(CHAIN_CONTEXT);
    hasher.update(previous);
    hasher.update(&index.to_le_bytes());
    if layout == Layout::Annotated {
        hasher.update(&[EVENTS_FORMAT_V3_ANNOTATED]);
    }
    hasher.update(body);
    *hasher.finalize().as_bytes()
}

fn split_stored(bytes: &[u8]) -> Result<(Layout, ChainHash, &[u8]), String> {
    let (&version, rest) = bytes.split_first().ok_or("empty event block")?;
    let layout =
        events_layout(version).ok_or_else(|| format!("unknown event block format {version}"))?;
    if rest.len() < 32 {
        return Err("event block shorter than its hash".into());
    }
    let (chain, body) = rest.split_at(32);
    Ok((layout, chain.try_into().expect("32 bytes"), body))
}

/// Event blocks for tests: this module's and the write node's snapshot fetch and transport
/// tests. Always compiled (two small functions): a test-only feature would make test and
/// non-test builds of every crate above this one differ, and build twice.
#[doc(hidden)]
pub mod test_blocks {
    use super::*;
    use ledger::{Currency, Event};

    /// A block at `index` that opens account `acct-<index>`.
    pub fn block(index: u64) -> EventBlock {
        EventBlock {
            meta: EntryMeta {
                index,
                timestamp_ms: 1_700_000_000_000 + index,
            },
            events: vec![Event::AccountOpened {
                account_id: format!("acct-{index}"),
                currency: Currency::parse("USD").expect("USD"),
                allow_negative_balance: false,
                annotations: None,
            }],
        }
    }

    /// Stored blocks at `indexes`, chained from `previous`: (bytes, chain head after each).
    pub fn chain_of(previous: ChainHash, indexes: &[u64]) -> (Vec<Vec<u8>>, Vec<ChainHash>) {
        let mut chain = previous;
        let mut blocks = Vec::new();
        let mut heads = Vec::new();
        for &index in indexes {
            let (bytes, head) = encode_events(&chain, &block(index));
            chain = head;
            blocks.push(bytes);
            heads.push(head);
        }
        (blocks, heads)
    }
}

#[cfg(test)]
mod tests {
    use super::test_blocks::block;
    use super::*;

    #[test]
    fn an_entry_timestamp_is_read_without_decoding_the_commands() {
        let payload = EntryPayload {
            timestamp_ms: 1_700_000_123_456,
            commands: Vec::new(),
        };
        let bytes = encode_entry(&payload);
        assert_eq!(entry_timestamp_ms(&bytes), Some(payload.timestamp_ms));
        assert_eq!(
            entry_timestamp_ms(&bytes),
            Some(decode_entry(&bytes).expect("entry").timestamp_ms)
        );
        assert_eq!(entry_timestamp_ms(&[]), None);
        assert_eq!(entry_timestamp_ms(&[9, 1]), None);
    }

    #[test]
    fn blocks_chain_and_any_flipped_byte_breaks_the_link() {
        let (first, head_1) = encode_events(&CHAIN_GENESIS, &block(3));
        let (second, head_2) = encode_events(&head_1, &block(7));
        assert_eq!(check_link(&CHAIN_GENESIS, 3, &first), Ok(head_1));
        assert_eq!(check_link(&head_1, 7, &second), Ok(head_2));
        assert_eq!(
            decode_linked(&head_1, 7, &second).expect("linked").block,
            block(7)
        );
        // Moved to another index, or chained after another block: broken.
        assert_eq!(check_link(&head_1, 8, &second), Err(ChainError::BrokenLink));
        assert_eq!(
            check_link(&CHAIN_GENESIS, 7, &second),
            Err(ChainError::BrokenLink)
        );
        for position in 1..second.len() {
            let mut flipped = second.clone();
            flipped[position] ^= 0x01;
            assert_eq!(
                check_link(&head_1, 7, &flipped),
                Err(ChainError::BrokenLink),
                "byte {position}"
            );
        }
        // The format byte: another known format (the annotated layout) breaks the link, an
        // unknown one is malformed.
        let mut flipped = second.clone();
        flipped[0] = EVENTS_FORMAT_V3_ANNOTATED;
        assert_eq!(
            check_link(&head_1, 7, &flipped),
            Err(ChainError::BrokenLink)
        );
        flipped[0] = 9;
        assert!(matches!(
            check_link(&head_1, 7, &flipped),
            Err(ChainError::Malformed(_))
        ));
    }

    #[test]
    fn an_annotated_block_chains_and_round_trips_and_its_format_byte_is_linked() {
        let mut annotated = block(4);
        annotated.events = vec![ledger::Event::TransferCompleted {
            transfer: ledger::TransferCommand {
                transaction_id: uuid::Uuid::from_u128(9),
                from: "a".into(),
                to: "b".into(),
                amount_minor: 1,
                currency: ledger::Currency::parse("USD").expect("USD"),
                annotations: ledger::Annotations {
                    reference: "r".into(),
                    ..ledger::Annotations::default()
                }
                .boxed(),
            },
            meta: annotated.meta,
        }];
        let (bytes, head) = encode_events(&CHAIN_GENESIS, &annotated);
        assert_eq!(bytes[0], EVENTS_FORMAT_V3_ANNOTATED);
        let linked = decode_linked(&CHAIN_GENESIS, 4, &bytes).expect("linked");
        assert_eq!((linked.block, linked.chain), (annotated, head));
        let mut flipped = bytes.clone();
        flipped[0] = EVENTS_FORMAT_V2;
        assert_eq!(
            check_link(&CHAIN_GENESIS, 4, &flipped),
            Err(ChainError::BrokenLink)
        );
    }
}
