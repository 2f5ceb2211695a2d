//! The pure ledger core of the distributed e-wallet.
//!
//! Every raft replica runs this code on the same committed commands and must reach the
//! same state, so nothing here does IO, reads a clock, draws randomness or lets hash
//! iteration order influence a result. Log position and time arrive as [`EntryMeta`],
//! stamped by the leader.
//!
//! The core is decide/evolve: [`decide`] turns a [`Command`] into a [`Decision`] without
//! changing state, [`evolve`] applies an [`Event`], and replaying the events with
//! `evolve` rebuilds the state exactly. [`Ledger::execute`] does both for one command.
//!
//! [`money`] and [`ids`] hold the edge-side parsing and validation that commands pass
//! through before they are proposed to the log.

pub mod annotations;
pub mod domain;
pub mod ids;

pub mod money;
pub mod state;
pub mod stored;
pub mod wire;

pub use annotations::Annotations;
pub use domain::legs;
pub use domain::{
    Account, AccountChange, AccountRefusal, AccountSettings, AccountStatus, Command, Conflict,
    CreditOutcome, CreditRecord, Decision, EntryMeta, Event, HOLD_TIMEOUT_MS_MAX,
    HOLDS_PENDING_MAX, Hold, HoldRefusal, HoldState, Malformed, Outcome, RejectReason, Settlement,
    TransferCommand, TransferRecord, TransferStatus,
};
pub use ids::{ACCOUNT_ID_BYTES_MAX, IdError, parse_transaction_id, validate_account_id};
pub use legs::{LEGS_MAX, Leg, LegsCommand, LegsDecision, LegsPart, LegsRecord, LegsStatus};
pub use money::{
    AMOUNT_MINOR_MAX, AMOUNT_TEXT_BYTES_MAX, Currency, MoneyError, format_minor, parse_amount,
    parse_non_negative_amount,
};
pub use state::{AccountRef, Ledger, decide, decide_with, evolve, evolve_owned};
pub use stored::{NothingStored, Record, Stored};

/// The partition that owns an account: the first 8 bytes of BLAKE3(account id bytes), read as
/// a little-endian u64, modulo the partition count. Stable across versions and platforms: it
/// must never change, or accounts would move between partitions.
pub fn partition_of(account_id: &str, partitions: u32) -> u32 {
    assert!(partitions > 0, "a cluster has at least one partition");
    let hash = blake3::hash(account_id.as_bytes());
    let prefix = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
    (prefix % u64::from(partitions)) as u32
}

/// Which of several partitions' records for one transaction id is *the* answer for the id:
/// the smallest key wins. Two source partitions can hold a record for one id: a transfer
/// refused with `TransactionIdReused` by a target that recorded the id first, or the one
/// reuse that is not detected (two transfers whose partitions are all different; see the
/// README, "Idempotency"). The record that is not such a refusal wins, then the lowest
/// source partition, so every node (write and read) gives the same answer.
pub fn transfer_answer_rank(source_partition: u32, rejected_as_reused: bool) -> (bool, u32) {
    (rejected_as_reused, source_partition)
}

/// The record answered for a transaction id, of `(source partition, record)` pairs: see
/// [`transfer_answer_rank`].
pub fn first_transfer_record(
    records: impl IntoIterator<Item = (u32, TransferRecord)>,
) -> Option<TransferRecord> {
    records
        .into_iter()
        .min_by_key(|(partition, record)| {
            let reused =
                record.status == TransferStatus::Rejected(RejectReason::TransactionIdReused);
            transfer_answer_rank(*partition, reused)
        })
        .map(|(_, record)| record)
}
