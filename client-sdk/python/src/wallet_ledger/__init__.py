"""Python client of the wallet ledger (distribution ``wallet-ledger-client``).

``WalletClient`` (write nodes: routing, retries, transparent pipelining of ``transfer()``),
``QueryClient`` (read nodes), their asyncio twins ``AsyncWalletClient`` and
``AsyncQueryClient`` (``grpc.aio``), typed errors (``Rejected``, ``Indefinite``), TLS and tokens
(``TlsConfig``, ``token=``). The generated messages are re-exported as ``wallet_pb2``,
``query_pb2``, ``cluster_pb2`` and ``event_log_pb2`` (package ``wallet.v1`` of ``proto/``).
See ``client-sdk/python/README.md``."""

from ._proto.wallet.v1 import (
    cluster_pb2,
    errors_pb2,
    event_log_pb2,
    query_pb2,
    query_pb2_grpc,
    wallet_pb2,
    wallet_pb2_grpc,
)
from .aio import AsyncQueryClient, AsyncWalletClient
from .auth import TlsConfig, authorization_metadata
from .client import (
    AccountOutcome,
    Leg,
    LegLike,
    QueryClient,
    TransferOutcome,
    TransferResults,
    WalletClient,
    item_error,
    new_transaction_id,
    new_transfer_legs_request,
)
from .errors import (
    ERROR_DOMAIN,
    METADATA_LEG,
    METADATA_REPLAYED,
    REASON_NOT_LEADER,
    REASONS,
    RETRYABLE_CODES,
    ErrorDetails,
    ErrorReason,
    Indefinite,
    Rejected,
    WalletError,
    classify,
    error_details,
    reason_of,
)
from .pipeline import PIPE_QUEUE_MAX, PipelineStats
from .retry import RetryPolicy, backoff_ceiling, call_with_retry, full_jitter
from .watch import (
    WATCH_RESUME_BACKOFF_MAX,
    WATCH_RESUME_BACKOFF_MIN,
    AsyncBalanceWatch,
    AsyncTransferWatch,
    BalanceWatch,
    TransferWatch,
)

__version__ = "0.2.0"

__all__ = [
    "AccountOutcome",
    "AsyncBalanceWatch",
    "AsyncTransferWatch",
    "TransferOutcome",
    "TransferResults",
    "TransferWatch",
    "WATCH_RESUME_BACKOFF_MAX",
    "WATCH_RESUME_BACKOFF_MIN",
    "item_error",
    "AsyncQueryClient",
    "AsyncWalletClient",
    "ERROR_DOMAIN",
    "ErrorReason",
    "Leg",
    "LegLike",
    "METADATA_LEG",
    "METADATA_REPLAYED",
    "REASONS",
    "REASON_NOT_LEADER",
    "reason_of",
    "PIPE_QUEUE_MAX",
    "RETRYABLE_CODES",
    "BalanceWatch",
    "ErrorDetails",
    "Indefinite",
    "PipelineStats",
    "QueryClient",
    "Rejected",
    "RetryPolicy",
    "TlsConfig",
    "WalletClient",
    "WalletError",
    "authorization_metadata",
    "backoff_ceiling",
    "call_with_retry",
    "classify",
    "cluster_pb2",
    "errors_pb2",
    "error_details",
    "event_log_pb2",
    "full_jitter",
    "new_transaction_id",
    "new_transfer_legs_request",
    "query_pb2",
    "query_pb2_grpc",
    "wallet_pb2",
    "wallet_pb2_grpc",
]
