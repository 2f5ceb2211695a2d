//! What a raft entry carries and what an applied entry leaves in the event log.
//!
//! postcard (a compact, deterministic serde format) encodes both; there is no per-transfer
//! protobuf on the replication path. A leading version byte lets the format evolve.

use anyhow::{Context, ensure};
use ledger::{Command, EntryMeta, Event};
use serde::{Deserialize, Serialize};

const ENTRY_FORMAT_V1: u8 = 1;
const EVENTS_FORMAT_V1: u8 = 1;

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

pub fn encode_events(block: &EventBlock) -> Vec<u8> {
    let mut bytes = vec![EVENTS_FORMAT_V1];
    bytes.extend(postcard::to_stdvec(block).expect("serialising to a Vec cannot fail"));
    bytes
}

pub fn decode_events(bytes: &[u8]) -> anyhow::Result<EventBlock> {
    let (&version, body) = bytes.split_first().context("empty event block")?;
    ensure!(
        version == EVENTS_FORMAT_V1,
        "unknown event block format {version}"
    );
    postcard::from_bytes(body).context("event block is corrupt")
}
