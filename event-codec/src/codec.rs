//! What a raft entry carries and what an applied entry leaves in the event log.
//!
//! postcard (a compact, deterministic serde format) encodes both; there is no per-transfer
//! protobuf on the replication path. A leading version byte lets the format evolve.

use anyhow::{Context, ensure};
use ledger::{Command, EntryMeta, Event};
use serde::{Deserialize, Serialize};

const ENTRY_FORMAT_V1: u8 = 1;
const EVENTS_FORMAT_V2: u8 = 2;

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
    let mut bytes = vec![ENTRY_FORMAT_V1];
    bytes.extend(postcard::to_stdvec(payload).expect("serialising to a Vec cannot fail"));
    bytes
}

pub fn decode_entry(bytes: &[u8]) -> anyhow::Result<EntryPayload> {
    let (&version, body) = bytes.split_first().context("empty entry payload")?;
    ensure!(version == ENTRY_FORMAT_V1, "unknown entry format {version}");
    postcard::from_bytes(body).context("entry payload is corrupt")
}

/// The leader's timestamp of an encoded entry, without decoding its commands (it is the
/// payload's first field). `None` for an empty entry (a new leader's) or a corrupt one.
pub fn entry_timestamp_ms(bytes: &[u8]) -> Option<u64> {
    let (&version, body) = bytes.split_first()?;
    if version != ENTRY_FORMAT_V1 {
        return None;
    }
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

/// Stored form: `u8 version (2) | [u8; 32] chain | postcard(EventBlock)`. Returns the bytes and
/// the block's chain hash (the next block's `previous`).
pub fn encode_events(previous: &ChainHash, block: &EventBlock) -> (Vec<u8>, ChainHash) {
    let body = postcard::to_stdvec(block).expect("serialising to a Vec cannot fail");
    let chain = chain_hash(previous, block.meta.index, &body);
    let mut bytes = Vec::with_capacity(1 + 32 + body.len());
    bytes.push(EVENTS_FORMAT_V2);
    bytes.extend_from_slice(&chain);
    bytes.extend(body);
    (bytes, chain)
}

/// Decodes a stored block without checking its link (see `check_link`).
pub fn decode_events(bytes: &[u8]) -> anyhow::Result<StoredBlock> {
    let (chain, body) = split_stored(bytes).map_err(anyhow::Error::msg)?;
    let block = postcard::from_bytes(body).context("event block is corrupt")?;
    Ok(StoredBlock { block, chain })
}

/// Checks that the stored block at `index` follows `previous`; returns its chain hash.
pub fn check_link(previous: &ChainHash, index: u64, bytes: &[u8]) -> Result<ChainHash, ChainError> {
    let (stored, body) = split_stored(bytes).map_err(ChainError::Malformed)?;
    if chain_hash(previous, index, body) == stored {
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

fn chain_hash(previous: &ChainHash, index: u64, body: &[u8]) -> ChainHash {
    let mut hasher = blake3::Hasher::new_derive_key(CHAIN_CONTEXT);
    hasher.update(previous);
    hasher.update(&index.to_le_bytes());
    hasher.update(body);
    *hasher.finalize().as_bytes()
}

fn split_stored(bytes: &[u8]) -> Result<(ChainHash, &[u8]), String> {
    let (&version, rest) = bytes.split_first().ok_or("empty event block")?;
    if version != EVENTS_FORMAT_V2 {
        return Err(format!("unknown event block format {version}"));
    }
    if rest.len() < 32 {
        return Err("event block shorter than its hash".into());
    }
    let (chain, body) = rest.split_at(32);
    Ok((chain.try_into().expect("32 bytes"), body))
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
        let mut flipped = second.clone();
        flipped[0] ^= 0x01;
        assert!(matches!(
            check_link(&head_1, 7, &flipped),
            Err(ChainError::Malformed(_))
        ));
    }
}
