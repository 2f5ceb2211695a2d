//! Statuses of the QueryService, in the write node's style: every error carries
//! `google.rpc.ErrorInfo` with a stable `reason` (domain `wallet.ledger`), plus a `BadRequest`
//! field violation for invalid input and `RetryInfo` where waiting and retrying makes sense.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

pub use proto::ERROR_DOMAIN;

/// An API error before it becomes a `tonic::Status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    pub reason: &'static str,
    pub message: String,
    /// The request field at fault (INVALID_ARGUMENT).
    pub field: Option<&'static str>,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(code: Code, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            field: None,
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

    pub fn retry_after(mut self, after: Duration) -> ApiError {
        self.retry_after = Some(after);
        self
    }

    pub fn account_not_found(account_id: &str) -> ApiError {
        ApiError::new(
            Code::NotFound,
            "ACCOUNT_NOT_FOUND",
            format!(
                "account {account_id:?} is not known to this read node (not opened, or not yet applied here: pass a consistency token to wait for it)"
            ),
        )
    }

    pub fn internal(error: &anyhow::Error) -> ApiError {
        ApiError::new(Code::Internal, "INTERNAL", format!("{error:#}"))
    }

    pub fn shutting_down() -> ApiError {
        ApiError::new(
            Code::Unavailable,
            "SHUTTING_DOWN",
            "the read node is shutting down; resume on another read node",
        )
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        let mut details = ErrorDetails::with_error_info(error.reason, ERROR_DOMAIN, HashMap::new());
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
