//! The wallet's error answer, one definition for every node: a status code, a stable `reason`
//! in `google.rpc.ErrorInfo` (domain [`ERROR_DOMAIN`](crate::ERROR_DOMAIN)) with its metadata,
//! a `BadRequest` field violation for invalid input and `RetryInfo` where waiting and retrying
//! makes sense. Each node maps its own outcomes to it (the write node's `api_error`, the read
//! node's `error`).

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::ERROR_DOMAIN;

/// An API error before it becomes a `tonic::Status`; the write node's SubmitTransfers reports
/// the same fields per transfer inside its result stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    pub reason: &'static str,
    pub message: String,
    /// The request field at fault (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION); a
    /// `BadRequest` violation on INVALID_ARGUMENT.
    pub field: Option<&'static str>,
    /// `ErrorInfo` metadata (e.g. `leader_id`, `leader_address`).
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

    /// The same error with `RetryInfo`.
    pub fn retry_after(mut self, after: Duration) -> ApiError {
        self.retry_after = Some(after);
        self
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
        // The field a request got wrong (INVALID_ARGUMENT) or names something that does not
        // exist (NOT_FOUND): the same field a stream item's `TransferError.field` carries.
        if let Some(field) = error.field
            && matches!(error.code, Code::InvalidArgument | Code::NotFound)
        {
            details.add_bad_request_violation(field, error.message.clone());
        }
        if let Some(retry_after) = error.retry_after {
            details.set_retry_info(Some(retry_after));
        }
        Status::with_error_details(error.code, error.message, details)
    }
}
