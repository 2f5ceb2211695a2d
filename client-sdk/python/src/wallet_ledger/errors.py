"""Typed errors, read from the rich gRPC status the wallet's nodes send.

Every error from a node carries ``google.rpc.ErrorInfo`` (domain ``wallet.ledger``) with a
stable ``reason``, a ``BadRequest`` field violation for invalid input, and ``RetryInfo`` where
waiting helps. They travel in the ``grpc-status-details-bin`` trailer (a serialized
``google.rpc.Status``), decoded here with googleapis-common-protos (``grpcio-status`` reads
it the same way).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import grpc
from google.rpc import error_details_pb2, status_pb2

from ._proto.wallet.v1 import errors_pb2

#: The generated ``wallet.v1.ErrorReason`` enum (``proto/wallet/v1/errors.proto``): every
#: reason a wallet error carries, as the value's name without ``ERROR_REASON_``.
ErrorReason = errors_pb2.ErrorReason
_REASON_PREFIX = "ERROR_REASON_"


def reason_of(value: int) -> str:
    """The reason string of an ``ErrorReason`` value (``ERROR_REASON_INSUFFICIENT_FUNDS`` is
    ``"INSUFFICIENT_FUNDS"``); ``""`` for ``ERROR_REASON_UNSPECIFIED`` or an unknown value."""
    try:
        name = errors_pb2.ErrorReason.Name(value)
    except ValueError:
        return ""
    if value == errors_pb2.ERROR_REASON_UNSPECIFIED:
        return ""
    return name[len(_REASON_PREFIX) :]


#: Every reason the nodes give (``ErrorInfo.reason``, ``TransferError.reason``), generated from
#: the ``ErrorReason`` enum. A reason outside it (from a newer node) is passed on as it comes:
#: decide by the gRPC code then.
REASONS: frozenset[str] = frozenset(
    reason_of(value) for value in errors_pb2.ErrorReason.values() if value != errors_pb2.ERROR_REASON_UNSPECIFIED
)

#: The ``google.rpc.ErrorInfo`` domain of every wallet error.
ERROR_DOMAIN = "wallet.ledger"
#: Reason of the redirect a write node that does not lead the partition answers with.
REASON_NOT_LEADER = reason_of(errors_pb2.ERROR_REASON_NOT_LEADER)
#: ``ErrorInfo`` metadata key set to ``"true"`` when an earlier log entry decided this
#: rejection and this call found it recorded (a retry).
METADATA_REPLAYED = "replayed"
#: ``ErrorInfo`` metadata key with the leader's ``host:port``, when known.
METADATA_LEADER_ADDRESS = "leader_address"
#: ``ErrorInfo`` metadata key of a ``TransferLegs`` refusal: the index (0-based, a decimal
#: string) of the first leg refused (``WalletError.leg``).
METADATA_LEG = "leg"
#: The trailer that carries the serialized ``google.rpc.Status``.
STATUS_DETAILS_KEY = "grpc-status-details-bin"
# The two reasons below are this SDK's own, for failures no node answered: not in REASONS.
#: Reason given to failures that never reached a node's application code.
REASON_TRANSPORT = "TRANSPORT_ERROR"
#: Reason given to an attempt that ran out of time.
REASON_DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"

#: Codes whose outcome is unknown (the request may have been applied): retried with the
#: same request, hence the same transaction_id. The same set as the Rust SDK's.
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        # The caller cancels by abandoning the call, so a CANCELLED that comes back means
        # the connection was lost mid-call.
        grpc.StatusCode.CANCELLED,
    }
)


@dataclasses.dataclass(frozen=True)
class ErrorDetails:
    """What a failed call's ``google.rpc.Status`` says, decoded."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    #: ``(field, description)`` of each ``BadRequest`` field violation.
    field_violations: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    #: Seconds from ``RetryInfo.retry_delay``, if the server asked for a pause.
    retry_delay: Optional[float] = None


def rich_status(error: grpc.RpcError) -> Optional[status_pb2.Status]:
    """The ``google.rpc.Status`` in a failed call's trailers, if it carries one."""
    trailers: Any = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.MergeFromString(value)
            except Exception:  # a garbled trailer: treat as absent
                return None
            return status
    return None


def error_details(error: grpc.RpcError) -> ErrorDetails:
    """Decodes the rich status of a failed call (an ``RpcError`` that is also a ``Call``)."""
    code: grpc.StatusCode = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message: str = (error.details() if hasattr(error, "details") else None) or ""
    status = rich_status(error)
    if status is None:
        return ErrorDetails(code=code, message=message)
    details = ErrorDetails(code=code, message=status.message or message)
    for any_detail in status.details:
        if any_detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            any_detail.Unpack(info)
            details = dataclasses.replace(
                details, reason=info.reason, domain=info.domain, metadata=dict(info.metadata)
            )
        elif any_detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            any_detail.Unpack(bad_request)
            details.field_violations.extend(
                (v.field, v.description) for v in bad_request.field_violations
            )
        elif any_detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            any_detail.Unpack(retry)
            details = dataclasses.replace(
                details, retry_delay=retry.retry_delay.ToTimedelta().total_seconds()
            )
    return details


class WalletError(Exception):
    """A failed wallet call. Match on ``reason`` (stable), not on the message."""

    def __init__(self, details: ErrorDetails, reason: str):
        self.details = details
        self.code: grpc.StatusCode = details.code
        self.reason: str = reason
        self.message: str = details.message
        #: The offending request field, from the first ``BadRequest`` field violation.
        self.field: Optional[str] = next((f for f, _ in details.field_violations if f), None)
        #: The transaction id of the failed call, set by calls that may make one themselves
        #: (``transfer_legs`` without a ``transaction_id``): ask again with it after an
        #: ``Indefinite`` error. ``None`` otherwise.
        self.transaction_id: Optional[str] = None
        super().__init__(f"{self.code.name} {reason}: {self.message}")

    @property
    def replayed(self) -> bool:
        """True when an earlier log entry decided this outcome and this call found it recorded
        (a retry): ``ErrorInfo`` metadata ``replayed`` = ``"true"``, or
        ``TransferResult.replayed`` for a streamed or batched item. Older nodes never set it."""
        return self.details.metadata.get(METADATA_REPLAYED) == "true"

    @property
    def leg(self) -> Optional[int]:
        """For a refused ``TransferLegs``: the index (0-based) of the first leg refused, from
        the ``ErrorInfo`` metadata ``leg`` (for insufficient funds, the leg of the account's
        first debit). ``None`` when the error names no leg (e.g. REPEATED_LEG, or another
        call)."""
        value = self.details.metadata.get(METADATA_LEG)
        if value is None:
            return None
        try:
            index = int(value)
        except ValueError:
            return None
        return index if index >= 0 else None

    @property
    def definite(self) -> bool:
        """True when nothing was applied and asking again gives the same answer."""
        return isinstance(self, Rejected)


class Rejected(WalletError):
    """The ledger refused the request (bad argument, unknown account, insufficient funds,
    reused transaction id, ...). Nothing was applied; never retried."""


class Indefinite(WalletError):
    """The outcome is unknown and the retries ran out: the request may or may not have
    been applied. Retry with the same transaction_id to learn the outcome; the ledger
    deduplicates by it, so a retry can never pay twice."""


def classify(error: grpc.RpcError) -> WalletError:
    """The typed error for a failed attempt."""
    details = error_details(error)
    code = details.code
    if code in RETRYABLE_CODES:
        if details.reason:
            reason = details.reason
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            reason = REASON_DEADLINE_EXCEEDED
        elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            reason = code.name
        else:
            # No ErrorInfo: the status was made by the gRPC library (connection refused,
            # reset, closed mid-call).
            reason = REASON_TRANSPORT
        return Indefinite(details, reason)
    return Rejected(details, details.reason or code.name)


def deadline_exceeded(message: str) -> Indefinite:
    """The ``Indefinite`` error of a call whose own deadline ran out inside the SDK."""
    details = ErrorDetails(code=grpc.StatusCode.DEADLINE_EXCEEDED, message=message)
    return Indefinite(details, REASON_DEADLINE_EXCEEDED)


def leader_hint(error: WalletError) -> Optional[str]:
    """The leader's ``host:port`` from a NOT_LEADER redirect, if the node knew it."""
    if error.code != grpc.StatusCode.UNAVAILABLE or error.reason != REASON_NOT_LEADER:
        return None
    address = error.details.metadata.get(METADATA_LEADER_ADDRESS, "").strip().rstrip("/")
    for scheme in ("http://", "https://"):
        if address.startswith(scheme):
            address = address[len(scheme) :]
    return address or None
