"""Python client of the wallet ledger: generated stubs (package ``wallet.v1``) plus typed
errors and the retry loop of the Rust SDK. See ``client-sdk/python/README.md``."""

from .client import QueryClient, WalletClient, new_transaction_id
from .errors import (
    ERROR_DOMAIN,
    RETRYABLE_CODES,
    ErrorDetails,
    Indefinite,
    Rejected,
    WalletError,
    classify,
    error_details,
)
from .retry import RetryPolicy, backoff_ceiling, call_with_retry, full_jitter

__all__ = [
    "ERROR_DOMAIN",
    "RETRYABLE_CODES",
    "ErrorDetails",
    "Indefinite",
    "QueryClient",
    "Rejected",
    "RetryPolicy",
    "WalletClient",
    "WalletError",
    "backoff_ceiling",
    "call_with_retry",
    "classify",
    "error_details",
    "full_jitter",
    "new_transaction_id",
]
