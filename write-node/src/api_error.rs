//! The write node's table from outcomes to gRPC statuses: ledger reject reasons, conflicts,
//! malformed input and store errors, each to a `proto::error::ApiError` (the one error type of
//! every node: `google.rpc.ErrorInfo` with a stable `reason` in domain `wallet.ledger`, plus
//! `BadRequest` field violations for invalid input and `RetryInfo` where waiting and retrying
//! makes sense).

use ledger::{AccountRefusal, Conflict, HoldRefusal, IdError, Malformed, MoneyError, RejectReason};
use tonic::Code;

use crate::limits;
use crate::store::StoreError;

pub use proto::ERROR_DOMAIN;
pub use proto::error::ApiError;

/// The write node's own constructors of [`ApiError`] (`ApiError::rejected(..)` and the rest
/// with this trait in scope).
pub trait WriteApiError {
    fn from_id(field: &'static str, error: &IdError) -> ApiError;
    fn from_money(field: &'static str, error: &MoneyError) -> ApiError;
    /// A command the ledger refused as malformed (see `ledger::Malformed`): only a forged
    /// peer message or a bug gets here, since the edge refuses such input first.
    fn malformed(malformed: Malformed) -> ApiError;
    fn rejected(reason: RejectReason) -> ApiError;
    fn conflict(conflict: Conflict) -> ApiError;
    /// A hold step the ledger answered without a change (see `ledger::HoldRefusal`).
    fn hold_refused(refusal: HoldRefusal) -> ApiError;
    /// An account change the ledger answered without a change (see `ledger::AccountRefusal`).
    fn account_refused(refusal: AccountRefusal) -> ApiError;
    /// Store errors: leader hints for NOT_LEADER, retry hints for transient ones.
    fn from_store(error: StoreError, peers: &std::collections::BTreeMap<u64, String>) -> ApiError;
}

impl WriteApiError for ApiError {
    fn from_id(field: &'static str, error: &IdError) -> ApiError {
        ApiError::invalid(field, error.reason(), format!("{field}: {error}"))
    }

    fn from_money(field: &'static str, error: &MoneyError) -> ApiError {
        ApiError::invalid(field, error.reason(), format!("{field}: {error}"))
    }

    fn malformed(malformed: Malformed) -> ApiError {
        ApiError::invalid(malformed.field(), malformed.reason(), malformed.message())
    }

    fn rejected(reason: RejectReason) -> ApiError {
        let code = match reason {
            RejectReason::FromAccountNotFound | RejectReason::ToAccountNotFound => Code::NotFound,
            RejectReason::CurrencyMismatch
            | RejectReason::InsufficientFunds
            | RejectReason::FromAccountFrozen
            | RejectReason::ToAccountFrozen
            | RejectReason::FromAccountClosed
            | RejectReason::ToAccountClosed => Code::FailedPrecondition,
            RejectReason::TransactionIdReused => Code::AlreadyExists,
        };
        ApiError {
            field: Some(reason.field()),
            ..ApiError::new(code, reason.reason(), reason.message())
        }
    }

    fn conflict(conflict: Conflict) -> ApiError {
        ApiError::new(Code::AlreadyExists, conflict.reason(), conflict.message())
    }

    fn hold_refused(refusal: HoldRefusal) -> ApiError {
        let code = match refusal {
            HoldRefusal::NotFound => Code::NotFound,
            HoldRefusal::LimitReached => Code::ResourceExhausted,
            _ => Code::FailedPrecondition,
        };
        ApiError {
            field: Some(refusal.field()),
            ..ApiError::new(code, refusal.reason(), refusal.message())
        }
    }

    fn account_refused(refusal: AccountRefusal) -> ApiError {
        let code = match refusal {
            AccountRefusal::NotFound => Code::NotFound,
            _ => Code::FailedPrecondition,
        };
        ApiError {
            field: Some(refusal.field()),
            ..ApiError::new(code, refusal.reason(), refusal.message())
        }
    }

    fn from_store(error: StoreError, peers: &std::collections::BTreeMap<u64, String>) -> ApiError {
        match error {
            StoreError::NotLeader {
                leader_id: Some(leader_id),
            } => not_leader(
                format!("this node is not the partition leader; node {leader_id} is"),
                leader_id,
                peers,
            ),
            StoreError::NotHosted {
                leader_id: Some(leader_id),
            } => not_leader(
                format!("this node holds no replica of the partition; node {leader_id} leads it"),
                leader_id,
                peers,
            ),
            StoreError::NotLeader { leader_id: None } => ApiError::new(
                Code::Unavailable,
                "NO_LEADER",
                "the partition has no leader right now (election in progress)",
            )
            .retry_after(limits::NO_LEADER_RETRY_AFTER),
            StoreError::NotHosted { leader_id: None } => ApiError::new(
                Code::Unavailable,
                "NO_LEADER",
                "this node holds no replica of the partition and has not learnt its leader yet",
            )
            .retry_after(limits::NO_LEADER_RETRY_AFTER),
            StoreError::OutcomeUnknown => ApiError::new(
                Code::Unavailable,
                "OUTCOME_UNKNOWN",
                "leadership changed while the command was in flight: it may or may not have been \
                 applied; retry with the same transaction_id to learn the outcome",
            ),
            StoreError::Overloaded => ApiError::new(
                Code::ResourceExhausted,
                "OVERLOADED",
                "the node's command queue is full",
            )
            .retry_after(limits::OVERLOAD_RETRY_AFTER),
            StoreError::ShuttingDown => ApiError::new(
                Code::Unavailable,
                "SHUTTING_DOWN",
                "the node is shutting down",
            ),
            StoreError::StorageFailed => ApiError::new(
                Code::Unavailable,
                "STORAGE_FAILURE",
                "the node's storage failed; it stopped accepting writes and must be restarted. \
                 A write in flight may or may not have been applied (the other replicas may \
                 still commit it): retry with the same transaction_id on another node",
            ),
            StoreError::ReadTimeout => ApiError::new(
                Code::Unavailable,
                "READ_TIMEOUT",
                "the linearizable read did not complete in time",
            )
            .retry_after(limits::READ_TIMEOUT_RETRY_AFTER),
        }
    }
}

/// NOT_LEADER, with the leader's id and (when known) address for the caller to go to.
fn not_leader(
    message: String,
    leader_id: u64,
    peers: &std::collections::BTreeMap<u64, String>,
) -> ApiError {
    let mut error = ApiError::new(Code::Unavailable, "NOT_LEADER", message);
    error.metadata.push(("leader_id", leader_id.to_string()));
    if let Some(address) = peers.get(&leader_id) {
        error.metadata.push(("leader_address", address.clone()));
    }
    error
}
