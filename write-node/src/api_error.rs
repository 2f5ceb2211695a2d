//! The one table from outcomes to gRPC statuses. Every error carries `google.rpc.ErrorInfo`
//! with a stable `reason` (domain `wallet.ledger`), plus `BadRequest` field violations for
//! invalid input and `RetryInfo` where waiting and retrying makes sense.

use std::collections::HashMap;
use std::time::Duration;

use ledger::{Conflict, IdError, Malformed, MoneyError, RejectReason};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::store::StoreError;

pub use proto::ERROR_DOMAIN;

/// An API error before it becomes a `tonic::Status`; SubmitTransfers reports the same fields
/// per transfer inside its result stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    pub reason: &'static str,
    pub message: String,
    /// The request field at fault (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION).
    pub field: Option<&'static str>,
    pub metadata: Vec<(&'static str, String)>,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(code: Code, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            field: None,
            metadata: Vec::new(),
            retry_after: None,
        }
    }

    pub fn invalid(
        field: &'static str,
        reason: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            field: Some(field),
            ..ApiError::new(Code::InvalidArgument, reason, message)
        }
    }

    pub fn from_id(field: &'static str, error: &IdError) -> ApiError {
        ApiError::invalid(field, error.reason(), format!("{field}: {error}"))
    }

    pub fn from_money(field: &'static str, error: &MoneyError) -> ApiError {
        ApiError::invalid(field, error.reason(), format!("{field}: {error}"))
    }

    /// A command the ledger refused as malformed (see `ledger::Malformed`): only a forged
    /// peer message or a bug gets here, since the edge refuses such input first.
    pub fn malformed(malformed: Malformed) -> ApiError {
        ApiError::invalid(malformed.field(), malformed.reason(), malformed.message())
    }

    pub fn rejected(reason: RejectReason) -> ApiError {
        let code = match reason {
            RejectReason::FromAccountNotFound | RejectReason::ToAccountNotFound => Code::NotFound,
            RejectReason::CurrencyMismatch | RejectReason::InsufficientFunds => {
                Code::FailedPrecondition
            }
            RejectReason::TransactionIdReused => Code::AlreadyExists,
        };
        ApiError {
            field: Some(reason.field()),
            ..ApiError::new(code, reason.reason(), reason.message())
        }
    }

    pub fn conflict(conflict: Conflict) -> ApiError {
        ApiError::new(Code::AlreadyExists, conflict.reason(), conflict.message())
    }

    pub fn not_found(
        field: &'static str,
        reason: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            field: Some(field),
            ..ApiError::new(Code::NotFound, reason, message)
        }
    }

    /// Store errors: leader hints for NOT_LEADER, retry hints for transient ones.
    pub fn from_store(
        error: StoreError,
        peers: &std::collections::BTreeMap<u64, String>,
    ) -> ApiError {
        match error {
            StoreError::NotLeader {
                leader_id: Some(leader_id),
            } => {
                let mut error = ApiError::new(
                    Code::Unavailable,
                    "NOT_LEADER",
                    format!("this node is not the partition leader; node {leader_id} is"),
                );
                error.metadata.push(("leader_id", leader_id.to_string()));
                if let Some(address) = peers.get(&leader_id) {
                    error.metadata.push(("leader_address", address.clone()));
                }
                error
            }
            StoreError::NotLeader { leader_id: None } => ApiError {
                retry_after: Some(Duration::from_millis(200)),
                ..ApiError::new(
                    Code::Unavailable,
                    "NO_LEADER",
                    "the partition has no leader right now (election in progress)",
                )
            },
            StoreError::OutcomeUnknown => ApiError::new(
                Code::Unavailable,
                "OUTCOME_UNKNOWN",
                "leadership changed while the command was in flight: it may or may not have been \
                 applied; retry with the same transaction_id to learn the outcome",
            ),
            StoreError::Overloaded => ApiError {
                retry_after: Some(crate::limits::OVERLOAD_RETRY_AFTER),
                ..ApiError::new(
                    Code::ResourceExhausted,
                    "OVERLOADED",
                    "the node's command queue is full",
                )
            },
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
            StoreError::ReadTimeout => ApiError {
                retry_after: Some(Duration::from_millis(200)),
                ..ApiError::new(
                    Code::Unavailable,
                    "READ_TIMEOUT",
                    "the linearizable read did not complete in time",
                )
            },
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        let metadata: HashMap<String, String> = error
            .metadata
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect();
        let mut details = ErrorDetails::with_error_info(error.reason, ERROR_DOMAIN, metadata);
        if let Some(field) = error.field
            && error.code == Code::InvalidArgument
        {
            details.add_bad_request_violation(field, error.message.clone());
        }
        if let Some(retry_after) = error.retry_after {
            details.set_retry_info(Some(retry_after));
        }
        Status::with_error_details(error.code, error.message, details)
    }
}
