//! The event log's vocabulary, one definition for every node: how a raft entry and an applied
//! entry's event block are encoded and chained ([`codec`]), and how a ledger event looks on
//! the wire ([`pb`]). The write node stores and streams with it; the read node and auditors
//! check the chain with it. No storage, raft or server code here.

pub mod codec;
pub mod pb;
