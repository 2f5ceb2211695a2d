//! A ledger's snapshot form (serde): accounts sorted by id, the records held in memory by
//! transaction id, the counts and running sum of every record (those held only on disk included), and
//! the checks a deserialized snapshot must pass before it becomes a ledger.

use super::accounts::IdHash;
use super::digest::RecordSum;
use super::digest::account_hash;
use super::{AccountRef, Ledger, add_balance_total};
use crate::domain::legs::{LegsRecord, LegsStatus};
use crate::domain::{Account, AccountSettings, CreditRecord, TransferRecord, TransferStatus};
use crate::money::{AMOUNT_MINOR_MAX, Currency};

/// Wire form of a [`Ledger`] snapshot (state format 5), the account ids borrowed from the
/// bytes it is read from.
#[derive(serde::Deserialize)]
struct LedgerSnapshot<'a> {
    #[serde(borrow)]
    accounts: Vec<AccountRef<'a>>,
    transfers: Vec<TransferRecord>,
    credits: Vec<CreditRecord>,
    outflow: Vec<(Currency, i128)>,
    totals: RecordTotals,
    /// The accounts whose settings are not the default, sorted by id.
    #[serde(borrow)]
    settings: Vec<(&'a str, AccountSettings)>,
}

/// Wire form of state formats 3 and 4 (before account settings existed).
#[derive(serde::Deserialize)]
struct Format4Snapshot<'a> {
    #[serde(borrow)]
    accounts: Vec<AccountRef<'a>>,
    transfers: Vec<TransferRecord>,
    credits: Vec<CreditRecord>,
    outflow: Vec<(Currency, i128)>,
    totals: RecordTotals,
}

/// The snapshot form of state formats 3 and 4 (no account settings). Deserializes into the
/// ledger it describes.
pub struct Format4(pub Ledger);

impl<'de> serde::Deserialize<'de> for Format4 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Format4, D::Error> {
        let Format4Snapshot {
            accounts,
            transfers,
            credits,
            outflow,
            totals,
        } = serde::Deserialize::deserialize(deserializer)?;
        let snapshot = LedgerSnapshot {
            accounts,
            transfers,
            credits,
            outflow,
            totals,
            settings: Vec::new(),
        };
        Ledger::from_snapshot(snapshot)
            .map(Format4)
            .map_err(serde::de::Error::custom)
    }
}

/// What a snapshot says of every record, held in memory or not.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
struct RecordTotals {
    transfers_count: u64,
    credits_count: u64,
    sum: RecordSum,
}

/// Borrowed twin of [`LedgerSnapshot`] so serializing does not clone the state.
#[derive(serde::Serialize)]
struct LedgerSnapshotRef<'a> {
    accounts: Vec<AccountRef<'a>>,
    transfers: Vec<&'a TransferRecord>,
    credits: Vec<&'a CreditRecord>,
    outflow: Vec<(Currency, i128)>,
    totals: RecordTotals,
    settings: Vec<(&'a str, AccountSettings)>,
}

/// Serialized as accounts and in-flight transfers (sorted by id), outflow, and the counts and
/// record sum of every record (finished records are kept on disk, not in snapshots). Deserialization re-checks the ledger's
/// invariants (unique ids, every currency sums to zero, no ordinary account negative,
/// completed transfers refer to open accounts of their currency) and refuses a snapshot that
/// breaks any of them.
///
/// A ledger with accounts opened with annotations refuses to be written this way (their hashes
/// would be lost): [`WithAccountAnnotations`] writes it.
impl serde::Serialize for Ledger {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !self.account_annotations.is_empty() {
            return Err(serde::ser::Error::custom(
                "a ledger with annotated accounts is written as WithAccountAnnotations",
            ));
        }
        if !self.legs_live.is_empty() {
            return Err(serde::ser::Error::custom(
                "a ledger with live multi-leg records is written as WithLiveLegs",
            ));
        }
        serde::Serialize::serialize(&self.snapshot_ref(), serializer)
    }
}

impl Ledger {
    /// What a snapshot of formats 3 to 6 holds, borrowed.
    fn snapshot_ref(&self) -> LedgerSnapshotRef<'_> {
        LedgerSnapshotRef {
            accounts: self.accounts().collect(),
            // Finished records are on every replica's disk: only live ones travel.
            transfers: self.live_records(),
            credits: Vec::new(),
            outflow: self
                .outflow
                .iter()
                .map(|(currency, outflow)| (*currency, *outflow))
                .collect(),
            totals: RecordTotals {
                transfers_count: self.transfers_count,
                credits_count: self.credits_count,
                sum: self.records,
            },
            settings: self
                .settings
                .iter()
                .map(|(account_id, settings)| (account_id.as_str(), *settings))
                .collect(),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Ledger {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Ledger, D::Error> {
        let snapshot = <LedgerSnapshot<'de> as serde::Deserialize>::deserialize(deserializer)?;
        Ledger::from_snapshot(snapshot).map_err(serde::de::Error::custom)
    }
}

/// The snapshot form of state formats 1 and 2, which held every record in memory (no counts,
/// no sum: both follow from the records). Deserializes into the ledger it describes.
pub struct Format2(pub Ledger);

#[derive(serde::Deserialize)]
struct Format2Snapshot {
    accounts: Vec<Account>,
    transfers: Vec<TransferRecord>,
    credits: Vec<CreditRecord>,
    outflow: Vec<(Currency, i128)>,
}

impl<'de> serde::Deserialize<'de> for Format2 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Format2, D::Error> {
        let Format2Snapshot {
            accounts,
            transfers,
            credits,
            outflow,
        } = serde::Deserialize::deserialize(deserializer)?;
        let snapshot = LedgerSnapshot {
            accounts: accounts.iter().map(AccountRef::from).collect(),
            transfers,
            credits,
            outflow,
            totals: RecordTotals {
                transfers_count: 0,
                credits_count: 0,
                sum: RecordSum::default(),
            },
            settings: Vec::new(),
        };
        let mut ledger =
            Ledger::from_snapshot_records(snapshot).map_err(serde::de::Error::custom)?;
        // No stated sum: the accounts' hashes join the records' (added while inserting).
        for account in ledger.accounts.iter() {
            ledger.records.add(&account_hash(account));
        }
        ledger.transfers_count = ledger.transfers.len() as u64;
        ledger.credits_count = ledger.credits.len() as u64;
        Ok(Format2(ledger))
    }
}

impl Ledger {
    /// The records that can still change (in flight, pending holds, holds being captured),
    /// sorted by transaction id: what a snapshot carries besides the accounts.
    fn live_records(&self) -> Vec<&TransferRecord> {
        let mut live: Vec<&TransferRecord> = self.in_flight().chain(self.pending_holds()).collect();
        live.sort_unstable_by_key(|record| record.transfer.transaction_id);
        live
    }

    /// A format-3 snapshot: the records it holds, with the counts and sum it states for all.
    fn from_snapshot(snapshot: LedgerSnapshot) -> Result<Ledger, String> {
        let totals = snapshot.totals;
        let mut ledger = Ledger::from_snapshot_records(snapshot)?;
        if ledger.transfers.len() as u64 > totals.transfers_count
            || ledger.credits.len() as u64 > totals.credits_count
        {
            return Err("snapshot: more records than it counts".to_string());
        }
        // The sum of the accounts' hashes is part of the stated sum; the records' hashes,
        // added while inserting, are replaced by the sum over every record.
        ledger.transfers_count = totals.transfers_count;
        ledger.credits_count = totals.credits_count;
        ledger.records = totals.sum;
        Ok(ledger)
    }

    /// The ledger of a snapshot's accounts, outflow and records (counts and sum over the
    /// records given, not the accounts: a format-3 snapshot states the sum, and hashing
    /// millions of accounts only to replace it would be most of a restart's work); checks
    /// every invariant the snapshot alone can show.
    fn from_snapshot_records(snapshot: LedgerSnapshot) -> Result<Ledger, String> {
        let mut ledger = Ledger::new();
        for (account_id, settings) in snapshot.settings {
            if settings == AccountSettings::default()
                || !(0..=AMOUNT_MINOR_MAX).contains(&settings.overdraft_limit_minor)
                || ledger
                    .settings
                    .insert(account_id.to_string(), settings)
                    .is_some()
            {
                return Err(format!(
                    "snapshot: settings of {account_id:?} are not canonical"
                ));
            }
        }
        for account in snapshot.accounts {
            add_balance_total(
                &mut ledger.balance_totals,
                account.currency,
                account.balance_minor,
            );
            let settings = ledger.account_settings(account.account_id);
            let closed = settings.status == crate::domain::AccountStatus::Closed;
            if closed && account.balance_minor != 0 {
                return Err(format!(
                    "snapshot: closed account {:?} is not empty",
                    account.account_id
                ));
            }
            if !account.allow_negative_balance
                && account.balance_minor < -i128::from(settings.overdraft_limit_minor)
            {
                return Err(format!(
                    "snapshot: ordinary account {:?} is negative",
                    account.account_id
                ));
            }
            if !ledger
                .accounts
                .insert(IdHash::of(account.account_id), account)
            {
                return Err(format!(
                    "snapshot: duplicate account {:?}",
                    account.account_id
                ));
            }
        }
        if let Some(account_id) = ledger
            .settings
            .keys()
            .find(|account_id| ledger.account(account_id).is_none())
        {
            return Err(format!(
                "snapshot: settings of {account_id:?}, which is not open"
            ));
        }
        for (currency, outflow) in snapshot.outflow {
            if outflow == 0 || ledger.outflow.insert(currency, outflow).is_some() {
                return Err(format!("snapshot: outflow of {currency} is not canonical"));
            }
        }
        if let Some((currency, total)) =
            ledger
                .totals_by_currency()
                .into_iter()
                .find(|(currency, total)| {
                    *total + ledger.outflow.get(currency).copied().unwrap_or(0) != 0
                })
        {
            return Err(format!(
                "snapshot: {currency} balances sum to {total}, which the outflow does not balance"
            ));
        }
        for record in snapshot.credits {
            let id = record.transfer.transaction_id;
            if ledger.insert_credit(record).is_some() {
                return Err(format!("snapshot: duplicate credit {id}"));
            }
        }
        for record in snapshot.transfers {
            let transfer = &record.transfer;
            if transfer.amount_minor < 1
                || transfer.amount_minor > AMOUNT_MINOR_MAX
                || transfer.from == transfer.to
            {
                return Err(format!(
                    "snapshot: transfer {} is malformed",
                    transfer.transaction_id
                ));
            }
            if record.status == TransferStatus::Completed {
                let in_currency = |account_id: &str| {
                    ledger
                        .account(account_id)
                        .is_some_and(|account| account.currency == transfer.currency)
                };
                // A cross-partition transfer (settled by a credit elsewhere) has its target
                // account in another partition.
                let target_here = record.settlement.is_none();
                if !in_currency(&transfer.from) || (target_here && !in_currency(&transfer.to)) {
                    return Err(format!(
                        "snapshot: completed transfer {} has no matching accounts",
                        transfer.transaction_id
                    ));
                }
            }
            if record.status.awaits_settle() {
                ledger.in_flight.insert(transfer.transaction_id.as_u128());
                super::count_debit_in_flight(&mut ledger, IdHash::of(&transfer.from), 1);
            }
            if let TransferStatus::Hold(hold) = record.status
                && hold.is_pending()
            {
                let covered = ledger
                    .account(&transfer.from)
                    .filter(|from| from.currency == transfer.currency)
                    .is_some_and(|from| ledger.covers(from, transfer.amount_minor));
                if !covered {
                    return Err(format!(
                        "snapshot: pending hold {} is not covered by its account",
                        transfer.transaction_id
                    ));
                }
                super::hold_amount(
                    &mut ledger,
                    &transfer.from,
                    i128::from(transfer.amount_minor),
                );
                ledger
                    .expiries
                    .insert((hold.expires_at_ms, transfer.transaction_id.as_u128()));
            }
            if let Some(duplicate) = ledger.insert_transfer(record) {
                return Err(format!(
                    "snapshot: duplicate transfer {}",
                    duplicate.transfer.transaction_id
                ));
            }
        }
        Ok(ledger)
    }
}

/// The snapshot form of state format 7: the ledger, then the hash of each account opened with
/// a reference or metadata (by account id, sorted), which formats up to 6 do not carry. The
/// record sum the ledger states already counts those hashes; an open of an existing account
/// compares its annotations with them.
pub struct WithAccountAnnotations(pub Ledger);

impl serde::Serialize for WithAccountAnnotations {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !self.0.legs_live.is_empty() {
            return Err(serde::ser::Error::custom(
                "a ledger with live multi-leg records is written as WithLiveLegs",
            ));
        }
        serde::Serialize::serialize(
            &(self.0.snapshot_ref(), self.0.annotation_hashes()),
            serializer,
        )
    }
}

impl<'de> serde::Deserialize<'de> for WithAccountAnnotations {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<WithAccountAnnotations, D::Error> {
        let (mut ledger, hashes) =
            <(Ledger, Vec<(&'de str, [u8; 32])>) as serde::Deserialize>::deserialize(deserializer)?;
        ledger
            .restore_annotation_hashes(hashes)
            .map_err(serde::de::Error::custom)?;
        Ok(WithAccountAnnotations(ledger))
    }
}

/// The snapshot form of state format 8: as format 7 (the ledger, then the account annotation
/// hashes), then the live multi-leg records (parts prepared across partitions, homes decided
/// and not finished), sorted by id, which no earlier format carries. The stated counts and
/// record sum already count them.
pub struct WithLiveLegs(pub Ledger);

impl serde::Serialize for WithLiveLegs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let live: Vec<&LegsRecord> = self.0.live_legs().collect();
        serde::Serialize::serialize(
            &(self.0.snapshot_ref(), self.0.annotation_hashes(), live),
            serializer,
        )
    }
}

impl<'de> serde::Deserialize<'de> for WithLiveLegs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<WithLiveLegs, D::Error> {
        let (mut ledger, hashes, live) = <(Ledger, Vec<(&'de str, [u8; 32])>, Vec<LegsRecord>) as serde::Deserialize>::deserialize(deserializer)?;
        ledger
            .restore_annotation_hashes(hashes)
            .map_err(serde::de::Error::custom)?;
        ledger
            .restore_live_legs(live)
            .map_err(serde::de::Error::custom)?;
        Ok(WithLiveLegs(ledger))
    }
}

impl Ledger {
    /// The hash of each account opened with annotations, by account id.
    fn annotation_hashes(&self) -> Vec<(&str, &[u8; 32])> {
        self.account_annotations
            .iter()
            .map(|(account_id, hash)| (account_id.as_str(), hash))
            .collect()
    }

    /// Takes a snapshot's account annotation hashes: of open accounts, sorted by id.
    fn restore_annotation_hashes(&mut self, hashes: Vec<(&str, [u8; 32])>) -> Result<(), String> {
        let mut previous: Option<&str> = None;
        for (account_id, hash) in hashes {
            if previous.is_some_and(|previous| previous >= account_id)
                || self.account(account_id).is_none()
            {
                return Err(format!(
                    "snapshot: annotations of {account_id:?} are not of an open account, or \
                     out of order"
                ));
            }
            self.account_annotations
                .insert(account_id.to_string(), hash);
            previous = Some(account_id);
        }
        Ok(())
    }

    /// Takes a snapshot's live multi-leg records (already counted in its totals and sum):
    /// each live, well formed, under an id recorded nowhere else, sorted; a prepared part's
    /// accounts open in the set's currency, each that moves money counted in flight.
    fn restore_live_legs(&mut self, live: Vec<LegsRecord>) -> Result<(), String> {
        let mut previous: Option<u128> = None;
        for record in live {
            let id = record.command.transaction_id;
            let key = id.as_u128();
            let well_formed = record.status.is_live()
                && record.command.shape().is_ok()
                && previous.is_none_or(|previous| previous < key)
                && !self.holds_record(key);
            if !well_formed {
                return Err(format!("snapshot: live multi-leg record {id} is malformed"));
            }
            if let LegsStatus::Prepared { part } = record.status {
                if !part.fits(&record.command) {
                    return Err(format!("snapshot: multi-leg part {id} is not of its set"));
                }
                for (account_id, net) in part.net(&record.command) {
                    let open = self
                        .account(account_id)
                        .is_some_and(|account| account.currency == record.command.currency);
                    if !open {
                        return Err(format!(
                            "snapshot: multi-leg part {id} names {account_id:?}, not open in its currency"
                        ));
                    }
                    if net != 0 {
                        super::count_debit_in_flight(self, IdHash::of(account_id), 1);
                    }
                }
            }
            if self.legs.len() + self.transfers.len() >= self.transfers_count as usize {
                return Err("snapshot: more records than it counts".to_string());
            }
            self.legs_live.insert(key);
            self.legs.insert(key, record);
            previous = Some(key);
        }
        Ok(())
    }
}
