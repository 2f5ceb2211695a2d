//! The state digest: a running sum of record hashes that every change to a record keeps up
//! to date (so [`Ledger::digest`] is O(currencies)), and the full walk of format-1 snapshots.

use std::collections::BTreeMap;

use super::{AccountRef, Ledger};
use crate::annotations::Annotations;
use crate::domain::legs::{LegsDecision, LegsRecord, LegsStatus};
use crate::domain::{
    AccountSettings, AccountStatus, CreditOutcome, CreditRecord, EntryMeta, Hold, HoldState,
    RejectReason, TransferCommand, TransferRecord, TransferStatus,
};
use crate::money::Currency;

/// Domain separation for [`Ledger::digest`]; bump the version if the encoding changes.
const DIGEST_CONTEXT: &str = "wallet ledger state digest v3";
/// The context of [`Ledger::digest_v2`], which state format 1 snapshots carry.
const DIGEST_V2_CONTEXT: &str = "wallet ledger state digest v2";

impl Ledger {
    /// A BLAKE3 digest of the whole state; equal states have equal digests, and any change to
    /// an account, transfer record, credit record or outflow changes it. O(currencies): the
    /// records enter through a running sum that every change keeps up to date.
    ///
    /// Encoding (all integers little-endian):
    ///
    /// ```text
    /// digest   = BLAKE3 derive_key("wallet ledger state digest v3",
    ///              u64 accounts_count, u64 transfers_count, u64 credits_count,
    ///              [u8; 32] record_sum, u64 outflow_count, (currency, i128 outflow)*)
    ///                                              -- outflow sorted by currency code
    /// record_sum = sum mod 2^256 (little-endian) of BLAKE3(record) over every record
    /// record   = u8 0, account | u8 1, transfer | u8 2, credit | u8 3, settings
    ///          | u8 4, account_annotations | u8 5, legs
    /// legs     = [u8; 16] transaction_id, currency, u64 count, (str from, str to,
    ///            i64 amount_minor)*, u8 0 | u8 1, annotations,
    ///            u8 0 (Completed) | u8 1, u32 leg, reason (Rejected), meta
    /// account_annotations = str account_id, annotations  -- only accounts opened with some
    /// annotations = str reference, u64 entries, (str key, str value)*   -- sorted by key
    /// settings = str account_id, u8 status (0 Active | 1 Frozen | 2 Closed),
    ///            i64 overdraft_limit_minor    -- only accounts whose settings are not the default
    /// account  = str account_id, currency, u8 allow_negative_balance (0|1), i128 balance_minor
    /// transfer = command, status, meta, settlement
    /// credit   = command, u8 0 (Credited) | u8 1, reason (Refused), meta
    /// command  = [u8; 16] transaction_id, str from, str to, i64 amount_minor, currency
    /// meta     = u64 index, u64 timestamp_ms
    /// settlement = u8 0 (none) | u8 1, meta, u64 credit_index
    /// str      = u64 byte length, UTF-8 bytes
    /// currency = [u8; 3] ASCII code, u8 minor_units
    /// status   = u8 0 (Completed) | u8 1, u8 reason (Rejected) | u8 2 (InFlight)
    ///          | u8 3, u64 expires_at_ms, u8 cross_partition, hold_state (Hold)
    /// hold_state = u8 0 (Pending) | u8 1, reason (Refused)
    ///          | u8 2, i64 amount_minor, meta (Capturing) | u8 3, i64 amount_minor, meta (Captured)
    ///          | u8 4, i64 amount_minor, reason (CaptureRefused)
    ///          | u8 5, meta (Voided) | u8 6, meta (Expired)
    /// reason   = 0 FromAccountNotFound | 1 ToAccountNotFound | 2 CurrencyMismatch
    ///          | 3 InsufficientFunds | 4 TransactionIdReused | 5 FromAccountFrozen
    ///          | 6 ToAccountFrozen | 7 FromAccountClosed | 8 ToAccountClosed
    /// ```
    ///
    /// Each record's encoding is injective (length prefixes, spelled-out tags rather than enum
    /// discriminants, a kind byte first), and a state holds each record once, so the record
    /// sum is a multiset hash of the state: independent of the order records were created in.
    /// What it guards against is replicas or a replay that disagree by accident (a bug, a
    /// corrupt disk), for which a 256-bit sum of BLAKE3 hashes is as good as one hash over
    /// everything. An additive multiset hash is not collision-resistant against someone who
    /// chooses very many records (a generalized-birthday attack); such a person would first
    /// need two replicas to hold different states, which applying one log cannot produce.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key(DIGEST_CONTEXT);
        hasher.update(&encode_len(self.accounts.len()));
        hasher.update(&self.transfers_count.to_le_bytes());
        hasher.update(&self.credits_count.to_le_bytes());
        hasher.update(&self.records.to_le_bytes());
        hash_outflow(&mut hasher, &self.outflow);
        *hasher.finalize().as_bytes()
    }

    /// The digest state format 1 snapshots carry (encoding v2: one BLAKE3 over every record
    /// in id order, in the encoding [`Ledger::digest`] documents, without the kind byte, the
    /// counts before each list). O(state): only for checking such a snapshot when it is
    /// read, once, never on the store thread's hot path.
    pub fn digest_v2(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key(DIGEST_V2_CONTEXT);
        hasher.update(&encode_len(self.accounts.len()));
        for account in self.accounts() {
            hash_account(&mut hasher, account);
        }
        hasher.update(&encode_len(self.transfers.len()));
        for record in self.transfers.values() {
            hash_transfer_record(&mut hasher, record);
        }
        hasher.update(&encode_len(self.credits.len()));
        for record in self.credits.values() {
            hash_credit_record(&mut hasher, record);
        }
        hash_outflow(&mut hasher, &self.outflow);
        *hasher.finalize().as_bytes()
    }

    /// The digest computed the slow way, from every record (for tests of the running sum;
    /// meaningful only for a ledger that holds every record).
    #[doc(hidden)]
    pub fn digest_from_scratch(&self) -> [u8; 32] {
        let mut recomputed = self.clone();
        recomputed.records = RecordSum::default();
        for account in self.accounts.iter() {
            recomputed.records.add(&account_hash(account));
        }
        for record in self.transfers.values() {
            recomputed.records.add(&transfer_hash(record));
        }
        for record in self.credits.values() {
            recomputed.records.add(&credit_hash(record));
        }
        for record in self.legs.values() {
            recomputed.records.add(&legs_hash(record));
        }
        for (account_id, settings) in &self.settings {
            recomputed
                .records
                .add(&settings_hash(account_id, *settings));
        }
        for hash in self.account_annotations.values() {
            recomputed.records.add(hash);
        }
        recomputed.digest()
    }
}

/// A 256-bit sum of record hashes modulo 2^256, as four little-endian 64-bit limbs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct RecordSum([u64; 4]);

impl RecordSum {
    pub(super) fn add(&mut self, hash: &[u8; 32]) {
        let mut carry = false;
        for (limb, word) in self.0.iter_mut().zip(limbs(hash)) {
            let (sum, overflow_a) = limb.overflowing_add(word);
            let (sum, overflow_b) = sum.overflowing_add(u64::from(carry));
            *limb = sum;
            carry = overflow_a || overflow_b;
        }
    }

    pub(super) fn sub(&mut self, hash: &[u8; 32]) {
        let mut borrow = false;
        for (limb, word) in self.0.iter_mut().zip(limbs(hash)) {
            let (difference, underflow_a) = limb.overflowing_sub(word);
            let (difference, underflow_b) = difference.overflowing_sub(u64::from(borrow));
            *limb = difference;
            borrow = underflow_a || underflow_b;
        }
    }

    fn to_le_bytes(self) -> [u8; 32] {
        let mut bytes = [0; 32];
        for (chunk, limb) in bytes.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        bytes
    }
}

fn limbs(hash: &[u8; 32]) -> impl Iterator<Item = u64> + '_ {
    hash.chunks_exact(8)
        .map(|chunk| u64::from_le_bytes(chunk.try_into().expect("8-byte chunk")))
}

const RECORD_ACCOUNT: u8 = 0;
const RECORD_TRANSFER: u8 = 1;
const RECORD_CREDIT: u8 = 2;
const RECORD_SETTINGS: u8 = 3;
const RECORD_ACCOUNT_ANNOTATIONS: u8 = 4;
const RECORD_LEGS: u8 = 5;

pub(super) fn account_hash(account: AccountRef) -> [u8; 32] {
    let mut encoder = Encoder::new();
    encoder.update(&[RECORD_ACCOUNT]);
    hash_account(&mut encoder, account);
    encoder.finalize()
}

pub(super) fn transfer_hash(record: &TransferRecord) -> [u8; 32] {
    let mut encoder = Encoder::new();
    encoder.update(&[RECORD_TRANSFER]);
    hash_transfer_record(&mut encoder, record);
    encoder.finalize()
}

pub(super) fn credit_hash(record: &CreditRecord) -> [u8; 32] {
    let mut encoder = Encoder::new();
    encoder.update(&[RECORD_CREDIT]);
    hash_credit_record(&mut encoder, record);
    encoder.finalize()
}

/// The hash of a multi-leg transfer's record.
pub(super) fn legs_hash(record: &LegsRecord) -> [u8; 32] {
    let mut encoder = Encoder::new();
    encoder.update(&[RECORD_LEGS]);
    let command = &record.command;
    encoder.update(command.transaction_id.as_bytes());
    hash_currency(&mut encoder, command.currency);
    encoder.update(&encode_len(command.legs.len()));
    for leg in &command.legs {
        hash_str(&mut encoder, &leg.from);
        hash_str(&mut encoder, &leg.to);
        encoder.update(&leg.amount_minor.to_le_bytes());
    }
    match &command.annotations {
        None => encoder.update(&[0]),
        Some(annotations) => {
            encoder.update(&[1]);
            hash_annotations(&mut encoder, annotations);
        }
    }
    match record.status {
        LegsStatus::Completed => encoder.update(&[0]),
        LegsStatus::Rejected { leg, reason } => {
            encoder.update(&[1]);
            encoder.update(&leg.to_le_bytes());
            encoder.update(&[reject_reason_tag(reason)]);
        }
        LegsStatus::Prepared { part } => {
            encoder.update(&[2]);
            encoder.update(&part.0.to_le_bytes());
        }
        LegsStatus::Decided(LegsDecision::Completed) => encoder.update(&[3]),
        LegsStatus::Decided(LegsDecision::Rejected { leg, reason }) => {
            encoder.update(&[4]);
            encoder.update(&leg.to_le_bytes());
            encoder.update(&[reject_reason_tag(reason)]);
        }
    }
    hash_meta(&mut encoder, record.meta);
    encoder.finalize()
}

/// The hash of an account's settings record (only accounts whose settings differ from the
/// default have one, so ledgers without any digest as before settings existed).
pub(super) fn settings_hash(account_id: &str, settings: AccountSettings) -> [u8; 32] {
    let mut encoder = Encoder::new();
    encoder.update(&[RECORD_SETTINGS]);
    hash_str(&mut encoder, account_id);
    let status = match settings.status {
        AccountStatus::Active => 0,
        AccountStatus::Frozen => 1,
        AccountStatus::Closed => 2,
    };
    encoder.update(&[status]);
    encoder.update(&settings.overdraft_limit_minor.to_le_bytes());
    encoder.finalize()
}

/// The hash of the record of what an account was opened with (only accounts opened with a
/// reference or metadata have one, so ledgers without any digest as before). Also what the
/// ledger keeps in memory to compare a later open of the account with.
pub(super) fn account_annotations_hash(account_id: &str, annotations: &Annotations) -> [u8; 32] {
    let mut encoder = Encoder::new();
    encoder.update(&[RECORD_ACCOUNT_ANNOTATIONS]);
    hash_str(&mut encoder, account_id);
    hash_annotations(&mut encoder, annotations);
    encoder.finalize()
}

/// Where a record's encoding goes: a BLAKE3 hasher directly, or through an [`Encoder`].
trait Sink {
    fn update(&mut self, bytes: &[u8]);
}

impl Sink for blake3::Hasher {
    fn update(&mut self, bytes: &[u8]) {
        blake3::Hasher::update(self, bytes);
    }
}

/// Hashes a record's encoding, many small fields, in few calls to BLAKE3 (each call has a
/// fixed cost that small fields pay over and over): fields collect in a buffer, and a record
/// that fits it (every account record, most transfer records) is hashed in one call to
/// `blake3::hash`. A BLAKE3 `Hasher` (about 2 KiB to set up and move) is made only for a
/// record that overflows the buffer. The same hash as feeding each field to a `Hasher`.
struct Encoder {
    /// Set once the buffer overflowed: what went before is in it.
    hasher: Option<Box<blake3::Hasher>>,
    buffer: [u8; ENCODER_BUFFER_BYTES],
    len: usize,
}

/// Holds a whole account record and most transfer records.
const ENCODER_BUFFER_BYTES: usize = 256;

impl Encoder {
    fn new() -> Encoder {
        Encoder {
            hasher: None,
            buffer: [0; ENCODER_BUFFER_BYTES],
            len: 0,
        }
    }

    fn finalize(self) -> [u8; 32] {
        let tail = &self.buffer[..self.len];
        match self.hasher {
            None => *blake3::hash(tail).as_bytes(),
            Some(mut hasher) => *hasher.update(tail).finalize().as_bytes(),
        }
    }
}

impl Sink for Encoder {
    fn update(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > ENCODER_BUFFER_BYTES {
            let hasher = self.hasher.get_or_insert_with(Box::default);
            hasher.update(&self.buffer[..self.len]);
            self.len = 0;
            if bytes.len() > ENCODER_BUFFER_BYTES {
                hasher.update(bytes);
                return;
            }
        }
        self.buffer[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

fn hash_account(hasher: &mut impl Sink, account: AccountRef) {
    hash_str(hasher, account.account_id);
    hash_currency(hasher, account.currency);
    hasher.update(&[u8::from(account.allow_negative_balance)]);
    hasher.update(&account.balance_minor.to_le_bytes());
}

fn hash_transfer_record(hasher: &mut impl Sink, record: &TransferRecord) {
    hash_transfer(hasher, &record.transfer);
    match record.status {
        TransferStatus::Completed => hasher.update(&[0]),
        TransferStatus::Rejected(reason) => hasher.update(&[1, reject_reason_tag(reason)]),
        TransferStatus::InFlight => hasher.update(&[2]),
        TransferStatus::Hold(hold) => hash_hold(hasher, hold),
    };
    hash_meta(hasher, record.meta);
    match record.settlement {
        None => hasher.update(&[0]),
        Some(settlement) => {
            hasher.update(&[1]);
            hash_meta(hasher, settlement.meta);
            hasher.update(&settlement.credit_index.to_le_bytes())
        }
    };
}

fn hash_hold(hasher: &mut impl Sink, hold: Hold) {
    hasher.update(&[3]);
    hasher.update(&hold.expires_at_ms.to_le_bytes());
    hasher.update(&[u8::from(hold.cross_partition)]);
    match hold.state {
        HoldState::Pending => hasher.update(&[0]),
        HoldState::Refused(reason) => hasher.update(&[1, reject_reason_tag(reason)]),
        HoldState::Capturing { amount_minor, meta } => {
            hasher.update(&[2]);
            hasher.update(&amount_minor.to_le_bytes());
            hash_meta(hasher, meta);
        }
        HoldState::Captured { amount_minor, meta } => {
            hasher.update(&[3]);
            hasher.update(&amount_minor.to_le_bytes());
            hash_meta(hasher, meta);
        }
        HoldState::CaptureRefused {
            amount_minor,
            reason,
        } => {
            hasher.update(&[4]);
            hasher.update(&amount_minor.to_le_bytes());
            hasher.update(&[reject_reason_tag(reason)]);
        }
        HoldState::Voided { meta } => {
            hasher.update(&[5]);
            hash_meta(hasher, meta);
        }
        HoldState::Expired { meta } => {
            hasher.update(&[6]);
            hash_meta(hasher, meta);
        }
    }
}

fn hash_credit_record(hasher: &mut impl Sink, record: &CreditRecord) {
    hash_transfer(hasher, &record.transfer);
    match record.outcome {
        CreditOutcome::Credited => hasher.update(&[0]),
        CreditOutcome::Refused(reason) => hasher.update(&[1, reject_reason_tag(reason)]),
    };
    hash_meta(hasher, record.meta);
}

fn hash_outflow(hasher: &mut impl Sink, outflow: &BTreeMap<Currency, i128>) {
    hasher.update(&encode_len(outflow.len()));
    for (currency, outflow) in outflow {
        hash_currency(hasher, *currency);
        hasher.update(&outflow.to_le_bytes());
    }
}

fn encode_len(len: usize) -> [u8; 8] {
    u64::try_from(len).expect("length fits u64").to_le_bytes()
}

fn hash_str(hasher: &mut impl Sink, text: &str) {
    hasher.update(&encode_len(text.len()));
    hasher.update(text.as_bytes());
}

fn hash_transfer(hasher: &mut impl Sink, transfer: &TransferCommand) {
    hasher.update(transfer.transaction_id.as_bytes());
    hash_str(hasher, &transfer.from);
    hash_str(hasher, &transfer.to);
    hasher.update(&transfer.amount_minor.to_le_bytes());
    hash_currency(hasher, transfer.currency);
    // Appended only when present, so transfers without annotations hash as they always did.
    if let Some(annotations) = &transfer.annotations {
        hash_annotations(hasher, annotations);
    }
}

fn hash_annotations(hasher: &mut impl Sink, annotations: &Annotations) {
    hash_str(hasher, &annotations.reference);
    hasher.update(&encode_len(annotations.metadata.len()));
    for (key, value) in &annotations.metadata {
        hash_str(hasher, key);
        hash_str(hasher, value);
    }
}

fn hash_meta(hasher: &mut impl Sink, meta: EntryMeta) {
    hasher.update(&meta.index.to_le_bytes());
    hasher.update(&meta.timestamp_ms.to_le_bytes());
}

fn hash_currency(hasher: &mut impl Sink, currency: Currency) {
    hasher.update(currency.code().as_bytes());
    hasher.update(&[u8::try_from(currency.minor_units()).expect("minor units fit u8")]);
}

fn reject_reason_tag(reason: RejectReason) -> u8 {
    match reason {
        RejectReason::FromAccountNotFound => 0,
        RejectReason::ToAccountNotFound => 1,
        RejectReason::CurrencyMismatch => 2,
        RejectReason::InsufficientFunds => 3,
        RejectReason::TransactionIdReused => 4,
        RejectReason::FromAccountFrozen => 5,
        RejectReason::ToAccountFrozen => 6,
        RejectReason::FromAccountClosed => 7,
        RejectReason::ToAccountClosed => 8,
    }
}

#[cfg(test)]
mod encoder_tests {
    use super::{ENCODER_BUFFER_BYTES, Encoder, Sink};

    /// Whatever the fields' sizes, below, at and beyond the buffer (one field larger than it
    /// included), the encoder's hash is BLAKE3 of the fields one after the other: records
    /// hash as they always did, so digests and snapshots agree with every other node.
    #[test]
    fn the_encoder_hashes_what_a_hasher_fed_field_by_field_would() {
        let bytes: Vec<u8> = (0..3 * ENCODER_BUFFER_BYTES as u32)
            .map(|n| (n * 31 % 251) as u8)
            .collect();
        for total in [0, 1, 40, 255, 256, 257, 300, 511, 512, 700] {
            for field in [1, 7, 64, 255, 256, 257, 600] {
                let mut encoder = Encoder::new();
                let mut hasher = blake3::Hasher::new();
                for chunk in bytes[..total].chunks(field) {
                    encoder.update(chunk);
                    hasher.update(chunk);
                }
                assert_eq!(
                    encoder.finalize(),
                    *hasher.finalize().as_bytes(),
                    "{total} bytes in fields of {field}"
                );
            }
        }
    }
}
