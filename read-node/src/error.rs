//! The read node's own error answers. The type, and its `tonic::Status` form with
//! `google.rpc.ErrorInfo` (domain `wallet.ledger`), `BadRequest` and `RetryInfo`, is the one
//! every node uses: `proto::error::ApiError`.

use tonic::Code;

pub use proto::ERROR_DOMAIN;
pub use proto::error::ApiError;

/// The read node's own constructors of [`ApiError`] (`ApiError::internal(..)` and the rest
/// with this trait in scope).
pub trait ReadApiError {
    fn account_not_found(account_id: &str) -> ApiError;
    fn internal(error: &anyhow::Error) -> ApiError;
    fn shutting_down() -> ApiError;
}

impl ReadApiError for ApiError {
    fn account_not_found(account_id: &str) -> ApiError {
        ApiError::not_found(
            "account_id",
            "ACCOUNT_NOT_FOUND",
            format!(
                "account {account_id:?} is not known to this read node (not opened, or not yet applied here: pass a consistency token to wait for it)"
            ),
        )
    }

    fn internal(error: &anyhow::Error) -> ApiError {
        ApiError::new(Code::Internal, "INTERNAL", format!("{error:#}"))
    }

    fn shutting_down() -> ApiError {
        ApiError::new(
            Code::Unavailable,
            "SHUTTING_DOWN",
            "the read node is shutting down; resume on another read node",
        )
    }
}
