//! The ledger's vocabulary: commands in, events recorded, outcomes out.

pub mod legs;

use crate::annotations::{Annotations, AnnotationsError};
use crate::money::Currency;
use legs::{LegsCommand, LegsDecision, LegsPart, LegsRecord, LegsStatus};

/// Move `amount_minor` of `currency` from one account to another, exactly once per
/// `transaction_id`. Encoded as [`crate::wire`] describes (the layout depends on whether it
/// carries annotations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferCommand {
    /// Client-chosen idempotency key; a retry carries the same id and the same fields.
    pub transaction_id: uuid::Uuid,
    /// Account debited.
    pub from: String,
    /// Account credited.
    pub to: String,
    /// Amount in minor units of `currency`; in `1..=AMOUNT_MINOR_MAX`.
    pub amount_minor: i64,
    /// Must equal the currency of both accounts.
    pub currency: Currency,
    /// The client's reference and metadata, if it gave any (`None` otherwise, never an
    /// empty value): see [`crate::annotations`].
    pub annotations: Option<Box<Annotations>>,
}

impl TransferCommand {
    /// The shape checks the edge makes (amount in range, a non-nil id, valid account ids,
    /// `from != to`, annotations within their limits), in one place: the edge, the peer handler of credits and `decide` all
    /// call it. A violation is refused (see [`Malformed`]) instead of breaking the ledger's
    /// invariants (a negative amount would bypass the funds check and move money backwards;
    /// `from == to` would be a no-op recorded as a completion).
    pub fn shape(&self) -> Result<(), Malformed> {
        if !(1..=crate::money::AMOUNT_MINOR_MAX).contains(&self.amount_minor) {
            return Err(Malformed::AmountOutOfRange);
        }
        if self.transaction_id.is_nil() {
            return Err(Malformed::NilTransactionId);
        }
        let valid = |account_id: &str| crate::ids::validate_account_id(account_id).is_ok();
        if !valid(&self.from) || !valid(&self.to) {
            return Err(Malformed::InvalidAccountId);
        }
        if self.from == self.to {
            return Err(Malformed::SameAccount);
        }
        if let Some(annotations) = &self.annotations {
            annotations.check().map_err(Malformed::from)?;
        }
        Ok(())
    }
}

/// Commands are shape-validated at the edge (ids, amount > 0, from != to); `decide` checks
/// the shape again and answers [`Outcome::Malformed`] (changing nothing) rather than trusting
/// whoever proposed it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Command {
    /// Open an account (idempotent for identical parameters).
    OpenAccount {
        /// Unique account id.
        account_id: String,
        /// The only currency the account holds.
        currency: Currency,
        /// Issuer/settlement accounts may go below zero; ordinary accounts may not.
        allow_negative_balance: bool,
        /// The client's reference and metadata for the account (`None` for neither), set
        /// once: an open of an existing account must carry the same.
        #[serde(with = "crate::wire::annotations_field")]
        annotations: Option<Box<Annotations>>,
    },
    /// Move money between two accounts of this partition, in one step.
    Transfer(TransferCommand),
    /// Step 1 of a cross-partition transfer, on the source partition: validate the debit side,
    /// take the money out of `from` and hold the transfer in flight.
    TransferOut(TransferCommand),
    /// Step 2, on the target partition: credit `to`, or refuse; idempotent by transaction id.
    Credit(TransferCommand),
    /// Step 3, on the source partition: complete the transfer, or refund `from` if the target
    /// refused. Idempotent: settling a settled transfer answers with its record.
    Settle {
        /// The in-flight transfer.
        #[serde(with = "uuid_serde")]
        transaction_id: uuid::Uuid,
        /// What the target partition decided.
        credit: CreditOutcome,
        /// The target partition's log index of that decision.
        credit_index: u64,
    },
    /// Reserve `amount_minor` of `from` for a later capture to `to` (a hold): the available
    /// balance of `from` drops by the amount, its balance does not. Decided on the source
    /// partition; `to` is checked here only when it is in the same partition
    /// (`cross_partition == false`), else on capture by its own partition.
    Authorize {
        /// The hold; its transaction id names the hold in every later step.
        transfer: TransferCommand,
        /// How long the hold lasts, from the leader-stamped time of the deciding entry, in
        /// `1..=HOLD_TIMEOUT_MS_MAX`.
        timeout_ms: u64,
        /// Whether `to` lives in another partition (the edge knows the partitioning; the
        /// ledger does not).
        cross_partition: bool,
    },
    /// Capture a pending hold: move `amount_minor` (at most the held amount; `None`: all of
    /// it) from `from` to `to` and release the rest. Idempotent by the hold's id.
    Capture {
        /// The hold.
        #[serde(with = "uuid_serde")]
        transaction_id: uuid::Uuid,
        /// The hold's `from` as the caller names it (it routes the call to the partition):
        /// a hold of another account is not found.
        from: String,
        /// The amount to move; `None` for the whole hold.
        amount_minor: Option<i64>,
    },
    /// Release a pending hold. Idempotent by the hold's id.
    Void {
        /// The hold.
        #[serde(with = "uuid_serde")]
        transaction_id: uuid::Uuid,
        /// As for [`Command::Capture`].
        from: String,
    },
    /// Release a pending hold whose expiry the deciding entry's time has reached (the leader
    /// proposes these for due holds; on any other hold it changes nothing).
    Expire {
        /// The hold.
        #[serde(with = "uuid_serde")]
        transaction_id: uuid::Uuid,
    },
    /// Change an account's lifecycle: freeze, unfreeze, close, or set its overdraft limit.
    /// Idempotent by effect: a change the account already reflects is answered with the
    /// account and records nothing.
    ChangeAccount {
        /// The account.
        account_id: String,
        /// What to change.
        change: AccountChange,
    },
    /// Move money along every leg or along none, within this partition (see
    /// [`crate::domain::legs`]).
    TransferLegs(LegsCommand),
    /// A multi-leg transfer across partitions, step 1 on each partition it touches (the home
    /// first): check this partition's part and take its net debits into flight, or refuse.
    /// Idempotent by transaction id (see [`crate::domain::legs`]).
    PrepareLegs {
        /// The set, as its client sent it.
        legs: LegsCommand,
        /// Which of its accounts are this partition's.
        part: LegsPart,
    },
    /// Step 2: the home's decision, applied to this partition's part (credits if completed,
    /// refunds if rejected); on the home it is the decision itself. A part that never
    /// prepared records a rejection and moves nothing. Idempotent.
    ResolveLegs {
        /// The set.
        legs: LegsCommand,
        /// Which of its accounts are this partition's.
        part: LegsPart,
        /// The home's decision.
        decision: LegsDecision,
    },
    /// Step 3, on the home: every other part is resolved; the home's record becomes final.
    FinishLegs {
        /// The set.
        #[serde(with = "uuid_serde")]
        transaction_id: uuid::Uuid,
    },
}

impl Command {
    /// The transaction id whose record deciding the command reads (`None` for opening an
    /// account): what the edge looks up before deciding.
    pub fn transaction_id(&self) -> Option<uuid::Uuid> {
        match self {
            Command::OpenAccount { .. } | Command::ChangeAccount { .. } => None,
            Command::Transfer(transfer)
            | Command::TransferOut(transfer)
            | Command::Credit(transfer) => Some(transfer.transaction_id),
            Command::Authorize { transfer, .. } => Some(transfer.transaction_id),
            Command::TransferLegs(legs)
            | Command::PrepareLegs { legs, .. }
            | Command::ResolveLegs { legs, .. } => Some(legs.transaction_id),
            Command::FinishLegs { transaction_id } => Some(*transaction_id),
            Command::Settle { transaction_id, .. }
            | Command::Capture { transaction_id, .. }
            | Command::Void { transaction_id, .. }
            | Command::Expire { transaction_id } => Some(*transaction_id),
        }
    }
}

/// The longest a hold may last: 30 days.
pub const HOLD_TIMEOUT_MS_MAX: u64 = 30 * 24 * 60 * 60 * 1000;

/// The most holds a partition keeps pending at once (each costs memory until it is
/// captured, voided or expired); an authorization beyond it is refused with
/// [`HoldRefusal::LimitReached`], recording nothing.
pub const HOLDS_PENDING_MAX: usize = 100_000;

/// A change to an account's lifecycle ([`Command::ChangeAccount`], [`Event::AccountChanged`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AccountChange {
    /// The account neither sends nor receives until unfrozen (refunds of its own transfers
    /// and the release of its holds still reach it).
    Freeze,
    /// The account sends and receives again.
    Unfreeze,
    /// Final: the account never sends or receives again. Only at a zero balance, with no
    /// pending hold and no transfer of its in flight.
    Close,
    /// How far below zero an ordinary account may go, in minor units of `currency` (the
    /// account's), in `0..=AMOUNT_MINOR_MAX`; 0 is no overdraft.
    SetOverdraftLimit {
        /// The limit.
        limit_minor: i64,
        /// Must be the account's currency.
        currency: Currency,
    },
}

/// Where an account stands in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AccountStatus {
    /// Sends and receives.
    #[default]
    Active,
    /// Neither sends nor receives (see [`AccountChange::Freeze`]).
    Frozen,
    /// Final: neither sends nor receives, ever.
    Closed,
}

/// An account's lifecycle settings; the default (active, no overdraft) is what every account
/// opens with, and the ledger stores only the accounts whose settings differ from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountSettings {
    /// Active, frozen or closed.
    pub status: AccountStatus,
    /// How far below zero an ordinary account may go, in minor units (0: not at all).
    /// Accounts opened with `allow_negative_balance` have no limit and keep 0 here.
    pub overdraft_limit_minor: i64,
}

impl AccountSettings {
    /// The settings after `change` (which the ledger has checked applies).
    pub fn after(self, change: AccountChange) -> AccountSettings {
        match change {
            AccountChange::Freeze => AccountSettings {
                status: AccountStatus::Frozen,
                ..self
            },
            AccountChange::Unfreeze => AccountSettings {
                status: AccountStatus::Active,
                ..self
            },
            AccountChange::Close => AccountSettings {
                status: AccountStatus::Closed,
                ..self
            },
            AccountChange::SetOverdraftLimit { limit_minor, .. } => AccountSettings {
                overdraft_limit_minor: limit_minor,
                ..self
            },
        }
    }
}

/// Why an account change (or a lookup of the account it names) changes nothing, answered
/// without recording anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountRefusal {
    /// No account with this id is open (NOT_FOUND).
    NotFound,
    /// The account is closed; nothing about it changes any more (FAILED_PRECONDITION).
    Closed,
    /// Closing needs a zero balance (FAILED_PRECONDITION).
    NotEmpty,
    /// Closing needs every hold on the account captured, voided or expired
    /// (FAILED_PRECONDITION).
    HasPendingHolds,
    /// Closing needs every cross-partition transfer from the account settled
    /// (FAILED_PRECONDITION; retry shortly).
    HasTransfersInFlight,
    /// The account may go below zero without limit (`allow_negative_balance`), so it has no
    /// overdraft limit to set (FAILED_PRECONDITION).
    UnlimitedOverdraft,
    /// The limit's currency is not the account's (FAILED_PRECONDITION).
    CurrencyMismatch,
    /// The account's available balance is below minus the new limit: lowering the limit
    /// that far would leave it overdrawn beyond its limit (FAILED_PRECONDITION).
    LimitBelowDebt,
}

impl AccountRefusal {
    /// The stable machine-readable reason.
    pub const fn reason(&self) -> &'static str {
        match self {
            AccountRefusal::NotFound => "ACCOUNT_NOT_FOUND",
            AccountRefusal::Closed => "ACCOUNT_CLOSED",
            AccountRefusal::NotEmpty => "ACCOUNT_NOT_EMPTY",
            AccountRefusal::HasPendingHolds => "ACCOUNT_HAS_PENDING_HOLDS",
            AccountRefusal::HasTransfersInFlight => "ACCOUNT_HAS_TRANSFERS_IN_FLIGHT",
            AccountRefusal::UnlimitedOverdraft => "OVERDRAFT_UNLIMITED",
            AccountRefusal::CurrencyMismatch => "CURRENCY_MISMATCH",
            AccountRefusal::LimitBelowDebt => "OVERDRAFT_LIMIT_BELOW_DEBT",
        }
    }

    /// The request field at fault.
    pub const fn field(&self) -> &'static str {
        match self {
            AccountRefusal::UnlimitedOverdraft | AccountRefusal::LimitBelowDebt => {
                "overdraft_limit"
            }
            AccountRefusal::CurrencyMismatch => "currency",
            _ => "account_id",
        }
    }

    /// A human sentence.
    pub const fn message(&self) -> &'static str {
        match self {
            AccountRefusal::NotFound => "No account with this id is open.",
            AccountRefusal::Closed => "The account is closed.",
            AccountRefusal::NotEmpty => "Only an account with a zero balance can be closed.",
            AccountRefusal::HasPendingHolds => {
                "The account has pending holds; capture or void them (or let them expire) before closing it."
            }
            AccountRefusal::HasTransfersInFlight => {
                "A transfer from the account to another partition is not settled yet; retry shortly."
            }
            AccountRefusal::UnlimitedOverdraft => {
                "The account may go below zero without limit (allow_negative_balance); it has no overdraft limit."
            }
            AccountRefusal::CurrencyMismatch => {
                "The overdraft limit's currency is not the account's currency."
            }
            AccountRefusal::LimitBelowDebt => {
                "The account owes more than the new limit allows (its available balance is below minus the limit); bring it up first."
            }
        }
    }
}

/// What a hold is and where it stands: the status of a [`TransferRecord`] that is a hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hold {
    /// Leader-stamped time from which the hold can no longer be captured: the deciding
    /// entry's time plus the timeout, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// Whether `to` lives in another partition (captured through the cross-partition saga).
    pub cross_partition: bool,
    /// Where it stands.
    pub state: HoldState,
}

/// The life of a hold: `Pending`, then exactly one of the others (`Capturing` only on the
/// way to `Captured` or `CaptureRefused`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HoldState {
    /// The amount of `from` is reserved.
    Pending,
    /// Final: nothing was reserved, for this reason (checked as for a transfer, against the
    /// available balance).
    Refused(RejectReason),
    /// Cross-partition capture under way: `amount_minor` left `from` at `meta`, the credit
    /// of `to` is not settled yet. Becomes `Captured` or `CaptureRefused`.
    Capturing {
        /// The amount captured.
        amount_minor: i64,
        /// Log position of the capture (source partition).
        meta: EntryMeta,
    },
    /// Final: `amount_minor` moved from `from` to `to` (across partitions: settled, see the
    /// record's settlement); the rest of the hold was released.
    Captured {
        /// The amount captured.
        amount_minor: i64,
        /// Log position of the capture (source partition).
        meta: EntryMeta,
    },
    /// Final: the target partition refused the credit of a cross-partition capture; `from`
    /// got the amount back and nothing stays reserved.
    CaptureRefused {
        /// The amount the capture asked for.
        amount_minor: i64,
        /// The target's reason.
        reason: RejectReason,
    },
    /// Final: released by a void at `meta`.
    Voided {
        /// Log position of the void.
        meta: EntryMeta,
    },
    /// Final: released at `meta`, an entry stamped at or after the expiry.
    Expired {
        /// Log position of the release.
        meta: EntryMeta,
    },
}

impl Hold {
    /// Whether the hold still reserves money.
    pub fn is_pending(&self) -> bool {
        self.state == HoldState::Pending
    }
}

/// Why a hold step changes nothing, answered without recording anything (the hold's own
/// state, or a limit, decides it: a retry gets the same answer while that state lasts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldRefusal {
    /// No hold with this id was authorized in this partition (NOT_FOUND).
    NotFound,
    /// The id names an ordinary transfer, not a hold (FAILED_PRECONDITION).
    NotAHold,
    /// The capture asks for more than the hold reserves (FAILED_PRECONDITION).
    AmountExceedsHold,
    /// The hold was captured (or is being captured) with another amount, or a void came
    /// after its capture (FAILED_PRECONDITION).
    AlreadyCaptured,
    /// The hold was voided (FAILED_PRECONDITION).
    AlreadyVoided,
    /// The hold expired (FAILED_PRECONDITION).
    Expired,
    /// The authorization was refused; there is nothing to capture or void
    /// (FAILED_PRECONDITION).
    NotAuthorized,
    /// A cross-partition capture of the hold was refused by the target partition; the hold
    /// is released (FAILED_PRECONDITION).
    CaptureRefused,
    /// The partition already keeps [`HOLDS_PENDING_MAX`] holds pending (RESOURCE_EXHAUSTED;
    /// retry once some are captured, voided or expired).
    LimitReached,
    /// A capture from or (within the partition) to a frozen account; the hold stays pending
    /// (FAILED_PRECONDITION).
    AccountFrozen,
    /// A capture (within the partition) to a closed account; the hold stays pending
    /// (FAILED_PRECONDITION).
    AccountClosed,
}

impl HoldRefusal {
    /// The stable machine-readable reason.
    pub const fn reason(&self) -> &'static str {
        match self {
            HoldRefusal::NotFound => "HOLD_NOT_FOUND",
            HoldRefusal::NotAHold => "NOT_A_HOLD",
            HoldRefusal::AmountExceedsHold => "CAPTURE_EXCEEDS_HOLD",
            HoldRefusal::AlreadyCaptured => "HOLD_ALREADY_CAPTURED",
            HoldRefusal::AlreadyVoided => "HOLD_ALREADY_VOIDED",
            HoldRefusal::Expired => "HOLD_EXPIRED",
            HoldRefusal::NotAuthorized => "HOLD_NOT_AUTHORIZED",
            HoldRefusal::CaptureRefused => "HOLD_CAPTURE_REFUSED",
            HoldRefusal::LimitReached => "HOLDS_LIMIT_REACHED",
            HoldRefusal::AccountFrozen => "ACCOUNT_FROZEN",
            HoldRefusal::AccountClosed => "ACCOUNT_CLOSED",
        }
    }

    /// The request field at fault.
    pub const fn field(&self) -> &'static str {
        match self {
            HoldRefusal::AmountExceedsHold => "amount",
            _ => "transaction_id",
        }
    }

    /// A human sentence.
    pub const fn message(&self) -> &'static str {
        match self {
            HoldRefusal::NotFound => "No hold with this transaction id was authorized.",
            HoldRefusal::NotAHold => "This transaction id names a transfer, not a hold.",
            HoldRefusal::AmountExceedsHold => "The capture amount exceeds the amount held.",
            HoldRefusal::AlreadyCaptured => {
                "The hold was already captured (with this request's amount, a retry is answered with that capture)."
            }
            HoldRefusal::AlreadyVoided => "The hold was voided.",
            HoldRefusal::Expired => "The hold expired before it was captured or voided.",
            HoldRefusal::NotAuthorized => "The hold's authorization was refused; nothing is held.",
            HoldRefusal::CaptureRefused => {
                "The hold's capture was refused by the receiving account's partition; nothing is held."
            }
            HoldRefusal::LimitReached => {
                "The partition keeps the maximum number of pending holds; capture, void or let some expire first."
            }
            HoldRefusal::AccountFrozen => {
                "An account of the capture is frozen; the hold stays pending (void it, or capture after unfreezing)."
            }
            HoldRefusal::AccountClosed => {
                "The account to credit is closed; the hold stays pending (void it)."
            }
        }
    }
}

/// The target partition's answer to a credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CreditOutcome {
    /// `to` was credited.
    Credited,
    /// Nothing was credited, for this reason; the source refunds.
    Refused(RejectReason),
}

/// What a target partition remembers about a credit, forever (its idempotency record).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CreditRecord {
    /// The transfer as the source recorded it.
    pub transfer: TransferCommand,
    /// Credited or refused.
    pub outcome: CreditOutcome,
    /// Log position (in the target partition) of the decision.
    pub meta: EntryMeta,
}

/// Where a command sits in the replicated log; stamped by the leader, never read from a clock here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntryMeta {
    /// Raft log index of the entry.
    pub index: u64,
    /// Leader's wall clock when it proposed the entry, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// Recorded (durable) rejections: a retry with the same id returns the same rejection forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RejectReason {
    /// The debited account does not exist.
    FromAccountNotFound,
    /// The credited account does not exist.
    ToAccountNotFound,
    /// The transfer's currency differs from one or both accounts' currency.
    CurrencyMismatch,
    /// An ordinary account's balance is below the amount.
    InsufficientFunds,
    /// The target partition already recorded this id for a different transfer (as the
    /// source of one, or as the target of a credit).
    TransactionIdReused,
    /// The debited account is frozen.
    FromAccountFrozen,
    /// The credited account is frozen.
    ToAccountFrozen,
    /// The debited account is closed.
    FromAccountClosed,
    /// The credited account is closed.
    ToAccountClosed,
}

impl RejectReason {
    /// "ACCOUNT_NOT_FOUND" (both not-found variants), "CURRENCY_MISMATCH", "INSUFFICIENT_FUNDS".
    pub const fn reason(&self) -> &'static str {
        match self {
            RejectReason::FromAccountNotFound | RejectReason::ToAccountNotFound => {
                "ACCOUNT_NOT_FOUND"
            }
            RejectReason::CurrencyMismatch => "CURRENCY_MISMATCH",
            RejectReason::InsufficientFunds => "INSUFFICIENT_FUNDS",
            RejectReason::TransactionIdReused => "TRANSACTION_ID_REUSED",
            RejectReason::FromAccountFrozen | RejectReason::ToAccountFrozen => "ACCOUNT_FROZEN",
            RejectReason::FromAccountClosed | RejectReason::ToAccountClosed => "ACCOUNT_CLOSED",
        }
    }

    /// The request field at fault: "from_account", "to_account", "currency", "amount".
    pub fn field(&self) -> &'static str {
        match self {
            RejectReason::FromAccountNotFound
            | RejectReason::FromAccountFrozen
            | RejectReason::FromAccountClosed => "from_account",
            RejectReason::ToAccountNotFound
            | RejectReason::ToAccountFrozen
            | RejectReason::ToAccountClosed => "to_account",
            RejectReason::CurrencyMismatch => "currency",
            RejectReason::InsufficientFunds => "amount",
            RejectReason::TransactionIdReused => "transaction_id",
        }
    }

    /// The inverse of (`reason`, `field`), as the event stream carries them.
    pub fn from_reason_and_field(reason: &str, field: &str) -> Option<RejectReason> {
        [
            RejectReason::FromAccountNotFound,
            RejectReason::ToAccountNotFound,
            RejectReason::CurrencyMismatch,
            RejectReason::InsufficientFunds,
            RejectReason::TransactionIdReused,
            RejectReason::FromAccountFrozen,
            RejectReason::ToAccountFrozen,
            RejectReason::FromAccountClosed,
            RejectReason::ToAccountClosed,
        ]
        .into_iter()
        .find(|candidate| candidate.reason() == reason && candidate.field() == field)
    }

    /// A human sentence.
    pub fn message(&self) -> &'static str {
        match self {
            RejectReason::FromAccountNotFound => "The account to debit does not exist.",
            RejectReason::ToAccountNotFound => "The account to credit does not exist.",
            RejectReason::CurrencyMismatch => {
                "The transfer currency does not match the currency of both accounts."
            }
            RejectReason::InsufficientFunds => {
                "The account to debit has insufficient funds for this amount."
            }
            RejectReason::TransactionIdReused => {
                "This transaction id was already used for a different transfer in the target account's partition."
            }
            RejectReason::FromAccountFrozen => "The account to debit is frozen.",
            RejectReason::ToAccountFrozen => "The account to credit is frozen.",
            RejectReason::FromAccountClosed => "The account to debit is closed.",
            RejectReason::ToAccountClosed => "The account to credit is closed.",
        }
    }
}

/// State of a transfer. `Completed` and `Rejected` are final and permanent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TransferStatus {
    /// Cross-partition only: debited on the source, credit on the target not yet settled.
    InFlight,
    /// Money moved.
    Completed,
    /// No money moved, for the given reason.
    Rejected(RejectReason),
    /// A hold (authorized by [`Command::Authorize`]), in its state.
    Hold(Hold),
}

impl TransferStatus {
    /// Whether the record can still change, so the ledger keeps it in memory: a transfer in
    /// flight (a settle finishes it), a pending hold, a hold being captured.
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            TransferStatus::InFlight
                | TransferStatus::Hold(Hold {
                    state: HoldState::Pending | HoldState::Capturing { .. },
                    ..
                })
        )
    }

    /// Whether a settle finishes it (a transfer in flight, a hold being captured).
    pub fn awaits_settle(&self) -> bool {
        matches!(
            self,
            TransferStatus::InFlight
                | TransferStatus::Hold(Hold {
                    state: HoldState::Capturing { .. },
                    ..
                })
        )
    }

    /// The hold, if the record is one.
    pub fn hold(&self) -> Option<&Hold> {
        match self {
            TransferStatus::Hold(hold) => Some(hold),
            _ => None,
        }
    }
}

/// What the ledger remembers about a transaction id, forever.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransferRecord {
    /// The command exactly as first decided; retries must match it field for field.
    pub transfer: TransferCommand,
    /// Completed or rejected.
    pub status: TransferStatus,
    /// Log position of the first (deciding) entry, not of any retry.
    pub meta: EntryMeta,
    /// Cross-partition only, once final: where the source settled it and the target's log
    /// index of the credit decision.
    pub settlement: Option<Settlement>,
}

impl TransferRecord {
    /// What the target partition is asked to credit while the record awaits a settle: the
    /// transfer, or for a hold being captured, the transfer with the captured amount.
    pub fn credit_command(&self) -> TransferCommand {
        match self.status {
            TransferStatus::Hold(Hold {
                state: HoldState::Capturing { amount_minor, .. },
                ..
            }) => TransferCommand {
                amount_minor,
                ..self.transfer.clone()
            },
            _ => self.transfer.clone(),
        }
    }
}

/// How a cross-partition transfer ended, on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Settlement {
    /// Source-partition position of the settle (or refund) entry.
    pub meta: EntryMeta,
    /// Target-partition log index of the credit decision.
    pub credit_index: u64,
}

/// An account and its balance.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    /// Unique account id.
    pub account_id: String,
    /// The only currency the account holds.
    pub currency: Currency,
    /// Issuer/settlement accounts may go below zero; ordinary accounts may not.
    pub allow_negative_balance: bool,
    /// Balance in minor units. `i128` so that no sequence of `i64` transfers can overflow.
    pub balance_minor: i128,
    /// Status and overdraft limit. Not part of the account's serialized form (snapshots
    /// carry settings apart from accounts, for the few accounts whose settings differ from
    /// the default).
    #[serde(skip)]
    pub settings: AccountSettings,
}

/// Events, past tense. Replay = fold of evolve over events.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Event {
    /// A new account exists with a zero balance.
    AccountOpened {
        /// Unique account id.
        account_id: String,
        /// The only currency the account holds.
        currency: Currency,
        /// Issuer/settlement accounts may go below zero; ordinary accounts may not.
        allow_negative_balance: bool,
        /// What the client attached to the account (`None` for nothing).
        #[serde(with = "crate::wire::annotations_field")]
        annotations: Option<Box<Annotations>>,
    },
    /// Money moved; the transaction id is now taken.
    TransferCompleted {
        /// The command that moved it.
        transfer: TransferCommand,
        /// Log position of the command.
        meta: EntryMeta,
    },
    /// No money moved, but the transaction id is now taken with this rejection.
    TransferRejected {
        /// The rejected command.
        transfer: TransferCommand,
        /// Why it was rejected.
        reason: RejectReason,
        /// Log position of the command.
        meta: EntryMeta,
    },
    /// Source partition: `from` debited, the transfer is in flight to another partition.
    TransferDebited {
        /// The transfer.
        transfer: TransferCommand,
        /// Log position (source partition).
        meta: EntryMeta,
    },
    /// Target partition: `to` credited.
    TransferCredited {
        /// The transfer.
        transfer: TransferCommand,
        /// Log position (target partition).
        meta: EntryMeta,
    },
    /// Target partition: the credit was refused; nothing moved here.
    CreditRefused {
        /// The transfer.
        transfer: TransferCommand,
        /// Why.
        reason: RejectReason,
        /// Log position (target partition).
        meta: EntryMeta,
    },
    /// Source partition: the target credited; the transfer is complete.
    TransferSettled {
        /// The transfer's id.
        #[serde(with = "uuid_serde")]
        transaction_id: uuid::Uuid,
        /// Target-partition log index of the credit.
        credit_index: u64,
        /// Log position (source partition).
        meta: EntryMeta,
    },
    /// Source partition: the target refused; `from` got the money back, the transfer is rejected.
    TransferRefunded {
        /// The transfer's id.
        #[serde(with = "uuid_serde")]
        transaction_id: uuid::Uuid,
        /// The target's reason, which becomes the transfer's.
        reason: RejectReason,
        /// Target-partition log index of the refusal.
        credit_index: u64,
        /// Log position (source partition).
        meta: EntryMeta,
    },
    /// The amount of `from` is reserved until the expiry.
    HoldAuthorized {
        /// The hold.
        transfer: TransferCommand,
        /// Leader-stamped time from which it can no longer be captured.
        expires_at_ms: u64,
        /// Whether `to` lives in another partition.
        cross_partition: bool,
        /// Log position of the authorization.
        meta: EntryMeta,
    },
    /// The authorization was refused; nothing is reserved, the id is taken.
    HoldRefused {
        /// The hold asked for.
        transfer: TransferCommand,
        /// Why.
        reason: RejectReason,
        /// As it would have been.
        expires_at_ms: u64,
        /// Whether `to` lives in another partition.
        cross_partition: bool,
        /// Log position.
        meta: EntryMeta,
    },
    /// Within a partition: `amount_minor` moved from `from` to `to`; the hold is released.
    HoldCaptured {
        /// The hold.
        #[serde(with = "uuid_serde")]
        transaction_id: uuid::Uuid,
        /// The amount moved.
        amount_minor: i64,
        /// Log position.
        meta: EntryMeta,
    },
    /// Across partitions: the hold is released and `amount_minor` left `from`, on its way to
    /// `to` (a credit and a settle follow, as for a cross-partition transfer).
    HoldCaptureDebited {
        /// The hold.
        #[serde(with = "uuid_serde")]
        transaction_id: uuid::Uuid,
        /// The amount debited.
        amount_minor: i64,
        /// Log position.
        meta: EntryMeta,
    },
    /// The hold is released by a void.
    HoldVoided {
        /// The hold.
        #[serde(with = "uuid_serde")]
        transaction_id: uuid::Uuid,
        /// Log position.
        meta: EntryMeta,
    },
    /// The hold is released at its expiry.
    HoldExpired {
        /// The hold.
        #[serde(with = "uuid_serde")]
        transaction_id: uuid::Uuid,
        /// Log position.
        meta: EntryMeta,
    },
    /// An account's lifecycle changed.
    AccountChanged {
        /// The account.
        account_id: String,
        /// The change.
        change: AccountChange,
        /// Log position.
        meta: EntryMeta,
    },
    /// Money moved along every leg of a multi-leg transfer; the transaction id is taken.
    LegsCompleted {
        /// The multi-leg transfer.
        legs: LegsCommand,
        /// Log position.
        meta: EntryMeta,
    },
    /// No money moved, but the transaction id is now taken with this rejection.
    LegsRejected {
        /// The multi-leg transfer.
        legs: LegsCommand,
        /// The index of the first leg refused.
        leg: u32,
        /// Why.
        reason: RejectReason,
        /// Log position.
        meta: EntryMeta,
    },
    /// Across partitions: this partition's part of a set is checked and its accounts' net
    /// debits are in flight (its outflow grows by them); the id is taken here.
    LegsPrepared {
        /// The set.
        legs: LegsCommand,
        /// This partition's accounts.
        part: LegsPart,
        /// Log position.
        meta: EntryMeta,
    },
    /// Across partitions: this partition refused its part; nothing moved, the id is taken
    /// here with the refusal.
    LegsPartRefused {
        /// The set.
        legs: LegsCommand,
        /// This partition's accounts.
        part: LegsPart,
        /// The index of the first leg refused.
        leg: u32,
        /// Why.
        reason: RejectReason,
        /// Log position.
        meta: EntryMeta,
    },
    /// Across partitions: the home's decision, applied to this partition's prepared part
    /// (net credits in if completed, net debits back if rejected).
    LegsResolved {
        /// The set.
        legs: LegsCommand,
        /// This partition's accounts.
        part: LegsPart,
        /// The home's decision.
        decision: LegsDecision,
        /// Log position.
        meta: EntryMeta,
    },
    /// Across partitions: the home rejected the set before this partition prepared its part;
    /// nothing moved, the id is taken here with the rejection (a late prepare is refused).
    LegsAborted {
        /// The set.
        legs: LegsCommand,
        /// This partition's accounts.
        part: LegsPart,
        /// The leg and reason of the home's rejection.
        leg: u32,
        /// Why.
        reason: RejectReason,
        /// Log position.
        meta: EntryMeta,
    },
    /// Across partitions, on the home: every other part is resolved; the record is final.
    LegsFinished {
        /// The set.
        #[serde(with = "uuid_serde")]
        transaction_id: uuid::Uuid,
        /// Log position.
        meta: EntryMeta,
    },
}

/// ALREADY_EXISTS outcomes: no state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// OpenAccount for an id that is open with another currency or overdraft flag.
    AccountExistsWithOtherParameters,
    /// A transfer whose id this partition already recorded for a different command, as the
    /// source of a transfer or as the target of a credit.
    TransactionIdReused,
}

impl Conflict {
    /// "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS", "TRANSACTION_ID_REUSED".
    pub fn reason(&self) -> &'static str {
        match self {
            Conflict::AccountExistsWithOtherParameters => "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS",
            Conflict::TransactionIdReused => "TRANSACTION_ID_REUSED",
        }
    }

    /// A human sentence.
    pub fn message(&self) -> &'static str {
        match self {
            Conflict::AccountExistsWithOtherParameters => {
                "An account with this id already exists with a different currency or overdraft setting."
            }
            Conflict::TransactionIdReused => {
                "This transaction id was already used for a transfer with different parameters."
            }
        }
    }
}

/// Why a command that reached the log fails the shape checks the edge makes. The edge
/// refuses such input before proposing it, so one in the log is a bug upstream or a forged
/// peer message; `decide` answers it as a refusal that changes nothing, so no committed entry
/// can ever stop a replica. The answer is `INVALID_ARGUMENT` with this reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// `amount_minor` outside `1..=AMOUNT_MINOR_MAX`.
    AmountOutOfRange,
    /// `from == to`.
    SameAccount,
    /// The nil UUID as transaction id.
    NilTransactionId,
    /// An account id that `validate_account_id` refuses.
    InvalidAccountId,
    /// A credit whose `from` account is open in the partition asked to credit it: a credit
    /// only ever comes from another partition, so it cannot be genuine.
    CreditFromLocalAccount,
    /// A settle for a transaction id this partition never debited.
    SettleOfUnknownTransfer,
    /// A hold's timeout outside `1..=HOLD_TIMEOUT_MS_MAX`.
    HoldTimeoutOutOfRange,
    /// An overdraft limit outside `0..=AMOUNT_MINOR_MAX`.
    OverdraftLimitOutOfRange,
    /// A reference longer than `REFERENCE_BYTES_MAX` or with control characters.
    InvalidReference,
    /// Metadata over a limit of [`crate::annotations`] (entries, key or value length, key
    /// characters, total size, control characters), or an empty annotation.
    InvalidMetadata,
    /// A multi-leg transfer without legs, or with more than [`legs::LEGS_MAX`].
    LegsOutOfRange,
    /// A multi-leg transfer with two legs of the same `from` and `to`.
    RepeatedLeg,
    /// A step of a multi-leg transfer across partitions naming a part that is not one of the
    /// set's (no account, every account, an account beyond the set's), or not the part this
    /// partition prepared, or a rejection naming a leg the set does not have.
    InvalidLegsPart,
    /// A completed decision for a set this partition did not prepare, or a finish of a set
    /// the home has not decided.
    LegsNotPrepared,
}

impl From<AnnotationsError> for Malformed {
    fn from(error: AnnotationsError) -> Malformed {
        match error {
            AnnotationsError::InvalidReference => Malformed::InvalidReference,
            AnnotationsError::InvalidMetadata => Malformed::InvalidMetadata,
        }
    }
}

impl Malformed {
    /// The stable machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Malformed::AmountOutOfRange => "AMOUNT_OUT_OF_RANGE",
            Malformed::SameAccount => "SAME_ACCOUNT",
            Malformed::NilTransactionId => "NIL_TRANSACTION_ID",
            Malformed::InvalidAccountId => "INVALID_ACCOUNT_ID",
            Malformed::CreditFromLocalAccount => "CREDIT_FROM_LOCAL_ACCOUNT",
            Malformed::SettleOfUnknownTransfer => "SETTLE_OF_UNKNOWN_TRANSFER",
            Malformed::HoldTimeoutOutOfRange => "HOLD_TIMEOUT_OUT_OF_RANGE",
            Malformed::OverdraftLimitOutOfRange => "OVERDRAFT_LIMIT_OUT_OF_RANGE",
            Malformed::InvalidReference => "INVALID_REFERENCE",
            Malformed::InvalidMetadata => "INVALID_METADATA",
            Malformed::LegsOutOfRange => "LEGS_OUT_OF_RANGE",
            Malformed::RepeatedLeg => "REPEATED_LEG",
            Malformed::InvalidLegsPart => "INVALID_LEGS_PART",
            Malformed::LegsNotPrepared => "LEGS_NOT_PREPARED",
        }
    }

    /// The request field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Malformed::AmountOutOfRange => "amount",
            Malformed::SameAccount => "to_account",
            Malformed::NilTransactionId | Malformed::SettleOfUnknownTransfer => "transaction_id",
            Malformed::InvalidAccountId | Malformed::CreditFromLocalAccount => "from_account",
            Malformed::HoldTimeoutOutOfRange => "timeout",
            Malformed::OverdraftLimitOutOfRange => "overdraft_limit",
            Malformed::InvalidReference => "reference",
            Malformed::InvalidMetadata => "metadata",
            Malformed::LegsOutOfRange
            | Malformed::RepeatedLeg
            | Malformed::InvalidLegsPart
            | Malformed::LegsNotPrepared => "legs",
        }
    }

    /// A human sentence.
    pub fn message(&self) -> &'static str {
        match self {
            Malformed::AmountOutOfRange => "The amount is outside the accepted range.",
            Malformed::SameAccount => "from_account and to_account must differ.",
            Malformed::NilTransactionId => "The nil UUID is not a transaction id.",
            Malformed::InvalidAccountId => "An account id is malformed.",
            Malformed::CreditFromLocalAccount => {
                "A credit must come from an account of another partition."
            }
            Malformed::SettleOfUnknownTransfer => {
                "There is no transfer in flight under this transaction id to settle."
            }
            Malformed::HoldTimeoutOutOfRange => {
                "A hold's timeout must be at least 1 ms and at most 30 days."
            }
            Malformed::OverdraftLimitOutOfRange => {
                "An overdraft limit must be at least 0 and at most the largest amount."
            }
            Malformed::InvalidReference => {
                "A reference is at most 128 bytes, without control characters."
            }
            Malformed::InvalidMetadata => {
                "Metadata is at most 16 entries; keys of 1 to 64 characters from \
                 [A-Za-z0-9_.:-]; values of at most 512 bytes without control characters; \
                 at most 4096 bytes in all."
            }
            Malformed::LegsOutOfRange => "A multi-leg transfer has 1 to 64 legs.",
            Malformed::RepeatedLeg => {
                "Two legs of a multi-leg transfer have the same from_account and to_account; merge them."
            }
            Malformed::InvalidLegsPart => {
                "A step of a multi-leg transfer names accounts that are not this partition's part of the set."
            }
            Malformed::LegsNotPrepared => {
                "A step of a multi-leg transfer that needs an earlier one this partition has not taken."
            }
        }
    }
}

/// The answer a command gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// OpenAccount succeeded (newly opened, or already open with the same parameters).
    Account(Account),
    /// The transfer's (original, if this was a retry) record: Completed, Rejected, or
    /// InFlight (cross-partition, not yet settled).
    Transfer(TransferRecord),
    /// A target partition's credit decision (original, if this was a retry).
    Credit(CreditRecord),
    /// ALREADY_EXISTS: nothing changed.
    Conflict(Conflict),
    /// INVALID_ARGUMENT: the command fails a shape check; nothing changed.
    Malformed(Malformed),
    /// A hold step that changes nothing (see [`HoldRefusal`]).
    Hold(HoldRefusal),
    /// An account change that changes nothing (see [`AccountRefusal`]).
    AccountRefused(AccountRefusal),
    /// A multi-leg transfer's (original, if this was a retry) record.
    Legs(LegsRecord),
}

impl Event {
    /// The transaction id whose record the event creates or finishes (`None` for opening
    /// an account).
    pub fn transaction_id(&self) -> Option<uuid::Uuid> {
        match self {
            Event::AccountOpened { .. } | Event::AccountChanged { .. } => None,
            Event::TransferSettled { transaction_id, .. }
            | Event::TransferRefunded { transaction_id, .. }
            | Event::HoldCaptured { transaction_id, .. }
            | Event::HoldCaptureDebited { transaction_id, .. }
            | Event::HoldVoided { transaction_id, .. }
            | Event::HoldExpired { transaction_id, .. } => Some(*transaction_id),
            Event::HoldAuthorized { transfer, .. } | Event::HoldRefused { transfer, .. } => {
                Some(transfer.transaction_id)
            }
            Event::TransferCompleted { transfer, .. }
            | Event::TransferRejected { transfer, .. }
            | Event::TransferDebited { transfer, .. }
            | Event::TransferCredited { transfer, .. }
            | Event::CreditRefused { transfer, .. } => Some(transfer.transaction_id),
            Event::LegsCompleted { legs, .. }
            | Event::LegsRejected { legs, .. }
            | Event::LegsPrepared { legs, .. }
            | Event::LegsPartRefused { legs, .. }
            | Event::LegsResolved { legs, .. }
            | Event::LegsAborted { legs, .. } => Some(legs.transaction_id),
            Event::LegsFinished { transaction_id, .. } => Some(*transaction_id),
        }
    }
}

impl Outcome {
    /// The outcome an event that creates a record answers with, built from the event alone
    /// (no lookup after applying it); `None` for events that change a record that existed
    /// (settles, hold steps after the authorization).
    pub(crate) fn of_new(event: &Event) -> Option<Outcome> {
        let transfer = |transfer: &TransferCommand, status, meta| {
            Outcome::Transfer(TransferRecord {
                transfer: transfer.clone(),
                status,
                meta,
                settlement: None,
            })
        };
        let credit = |transfer: &TransferCommand, outcome, meta| {
            Outcome::Credit(CreditRecord {
                transfer: transfer.clone(),
                outcome,
                meta,
            })
        };
        Some(match event {
            Event::AccountOpened {
                account_id,
                currency,
                allow_negative_balance,
                annotations: _,
            } => Outcome::Account(Account {
                account_id: account_id.clone(),
                currency: *currency,
                allow_negative_balance: *allow_negative_balance,
                balance_minor: 0,
                settings: AccountSettings::default(),
            }),
            Event::TransferCompleted { transfer: t, meta } => {
                transfer(t, TransferStatus::Completed, *meta)
            }
            Event::TransferRejected {
                transfer: t,
                reason,
                meta,
            } => transfer(t, TransferStatus::Rejected(*reason), *meta),
            Event::TransferDebited { transfer: t, meta } => {
                transfer(t, TransferStatus::InFlight, *meta)
            }
            Event::TransferCredited { transfer: t, meta } => {
                credit(t, CreditOutcome::Credited, *meta)
            }
            Event::CreditRefused {
                transfer: t,
                reason,
                meta,
            } => credit(t, CreditOutcome::Refused(*reason), *meta),
            Event::HoldAuthorized {
                transfer: t,
                expires_at_ms,
                cross_partition,
                meta,
            }
            | Event::HoldRefused {
                transfer: t,
                expires_at_ms,
                cross_partition,
                meta,
                ..
            } => {
                let state = match event {
                    Event::HoldRefused { reason, .. } => HoldState::Refused(*reason),
                    _ => HoldState::Pending,
                };
                let hold = Hold {
                    expires_at_ms: *expires_at_ms,
                    cross_partition: *cross_partition,
                    state,
                };
                transfer(t, TransferStatus::Hold(hold), *meta)
            }
            Event::LegsCompleted { legs, meta } => Outcome::Legs(LegsRecord {
                command: legs.clone(),
                status: LegsStatus::Completed,
                meta: *meta,
            }),
            Event::LegsPrepared { legs, part, meta } => Outcome::Legs(LegsRecord {
                command: legs.clone(),
                status: LegsStatus::Prepared { part: *part },
                meta: *meta,
            }),
            Event::LegsRejected {
                legs,
                leg,
                reason,
                meta,
            }
            | Event::LegsPartRefused {
                legs,
                leg,
                reason,
                meta,
                ..
            }
            | Event::LegsAborted {
                legs,
                leg,
                reason,
                meta,
                ..
            } => Outcome::Legs(LegsRecord {
                command: legs.clone(),
                status: LegsStatus::Rejected {
                    leg: *leg,
                    reason: *reason,
                },
                meta: *meta,
            }),
            Event::TransferSettled { .. }
            | Event::TransferRefunded { .. }
            | Event::HoldCaptured { .. }
            | Event::HoldCaptureDebited { .. }
            | Event::HoldVoided { .. }
            | Event::HoldExpired { .. }
            | Event::AccountChanged { .. }
            | Event::LegsResolved { .. }
            | Event::LegsFinished { .. } => return None,
        })
    }
}

/// Result of decide: either an event to apply, or a reply with no state change (duplicate retry, conflict, re-open with same params).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Apply this event; the outcome follows from the state after applying it.
    Apply(Event),
    /// Answer with this outcome; the state does not change.
    Reply(Outcome),
}

/// Serde for `uuid::Uuid` without enabling the uuid crate's `serde` feature, in the same
/// shape that feature uses: the hyphenated string for human-readable formats, 16 raw
/// bytes otherwise (postcard), so enabling the feature elsewhere changes nothing on the wire.
pub(crate) mod uuid_serde {
    use std::fmt;

    use serde::de::{Error, Unexpected, Visitor};

    pub(crate) fn serialize<S: serde::Serializer>(
        id: &uuid::Uuid,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(
                id.hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            )
        } else {
            serializer.serialize_bytes(id.as_bytes())
        }
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<uuid::Uuid, D::Error> {
        struct UuidVisitor;

        impl<'de> Visitor<'de> for UuidVisitor {
            type Value = uuid::Uuid;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a UUID as a hyphenated string or 16 bytes")
            }

            fn visit_str<E: Error>(self, text: &str) -> Result<uuid::Uuid, E> {
                uuid::Uuid::try_parse(text)
                    .map_err(|_| E::invalid_value(Unexpected::Str(text), &self))
            }

            fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<uuid::Uuid, E> {
                uuid::Uuid::from_slice(bytes).map_err(|_| E::invalid_length(bytes.len(), &self))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<uuid::Uuid, A::Error> {
                let mut bytes = [0_u8; 16];
                for (position, byte) in bytes.iter_mut().enumerate() {
                    *byte = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(position, &self))?;
                }
                if seq.next_element::<u8>()?.is_some() {
                    return Err(A::Error::invalid_length(17, &self));
                }
                Ok(uuid::Uuid::from_bytes(bytes))
            }
        }

        if deserializer.is_human_readable() {
            deserializer.deserialize_str(UuidVisitor)
        } else {
            deserializer.deserialize_bytes(UuidVisitor)
        }
    }
}
