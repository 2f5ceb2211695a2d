"""Clients of the write nodes (``WalletService``) and of a read node (``QueryService``)."""

from __future__ import annotations

import datetime
import threading
import time
import uuid
import weakref
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Optional, Sequence, TypeVar, Union, cast

import grpc

from ._proto.wallet.v1 import cluster_pb2, cluster_pb2_grpc, query_pb2, query_pb2_grpc, wallet_pb2, wallet_pb2_grpc
from .auth import Channels, TlsConfig
from .errors import METADATA_REPLAYED, ErrorDetails, Indefinite, Rejected, WalletError, classify
from .pipeline import FALLBACK, PIPE_QUEUE_MAX, Counters, Outcome, Pipe, PipelineStats, final_answer, result_outcome
from .retry import RetryPolicy, call_with_retry
from .watch import BalanceWatch, TransferWatch

T = TypeVar("T")

#: Channels kept to nodes learnt from leader hints rather than configured.
DISCOVERED_ENDPOINTS_MAX = 16
#: Routing keys (accounts) whose last known leader is remembered.
LEADER_CACHE_MAX = 4096


#: A transfer of ``transfer_batch`` or ``submit_transfers``: a ``TransferRequest`` or a mapping
#: of its fields (``transaction_id``, ``from_account``, ``to_account``, ``amount``, ``currency``,
#: optional ``reference`` and ``metadata``, a mapping of strings).
TransferLike = Union[wallet_pb2.TransferRequest, Mapping[str, Any]]
#: An account of ``open_accounts``: an ``OpenAccountRequest`` or a mapping of its fields
#: (``account_id``, ``currency``, optional ``allow_negative_balance``, ``reference`` and
#: ``metadata``, a mapping of strings).
AccountLike = Union[wallet_pb2.OpenAccountRequest, Mapping[str, Any]]
#: One outcome of ``transfer_batch``: the response, or the item's typed error.
TransferOutcome = Union[wallet_pb2.TransferResponse, WalletError]
#: One outcome of ``open_accounts``: the account, or the item's typed error.
AccountOutcome = Union[wallet_pb2.Account, WalletError]

_CODES = {code.value[0]: code for code in grpc.StatusCode}


def transfer_request(transfer: TransferLike) -> wallet_pb2.TransferRequest:
    if isinstance(transfer, wallet_pb2.TransferRequest):
        return transfer
    return wallet_pb2.TransferRequest(**dict(transfer))


def new_transfer_request(
    transaction_id: str,
    from_account: str,
    to_account: str,
    amount: str,
    currency: str,
    reference: Optional[str] = None,
    metadata: Optional[Mapping[str, str]] = None,
) -> wallet_pb2.TransferRequest:
    """The ``TransferRequest`` of ``transfer``: ``reference`` and ``metadata`` are optional
    (``None``: none). The node checks their limits (reference: at most 128 bytes without
    control characters, else ``Rejected`` INVALID_REFERENCE; metadata: at most 16 entries, keys
    of 1 to 64 characters from ``[A-Za-z0-9_.:-]``, values of at most 512 bytes without control
    characters, 4096 bytes in all, else INVALID_METADATA)."""
    return wallet_pb2.TransferRequest(
        transaction_id=transaction_id,
        from_account=from_account,
        to_account=to_account,
        amount=amount,
        currency=currency,
        reference=reference or "",
        metadata=_metadata(metadata),
    )


class Leg(NamedTuple):
    """One leg of ``transfer_legs``: move ``amount`` (a decimal string, e.g. ``"12.34"``) of
    ``currency`` from ``from_account`` to ``to_account``. Every leg of a set has the same
    currency."""

    from_account: str
    to_account: str
    amount: str
    currency: str


#: A leg of ``transfer_legs``: a ``Leg`` (or a plain 4-tuple in its order), a
#: ``wallet_pb2.TransferLeg``, or a mapping of its fields (``from_account``, ``to_account``,
#: ``amount``, ``currency``).
LegLike = Union[Leg, wallet_pb2.TransferLeg, Mapping[str, Any], tuple[str, str, str, str]]


def transfer_leg(leg: LegLike) -> wallet_pb2.TransferLeg:
    """The ``TransferLeg`` message of one leg (a copy: changing the argument afterwards
    changes nothing that is sent)."""
    if isinstance(leg, wallet_pb2.TransferLeg):
        copy = wallet_pb2.TransferLeg()
        copy.CopyFrom(leg)
        return copy
    if isinstance(leg, Mapping):
        return wallet_pb2.TransferLeg(**dict(leg))
    if isinstance(leg, tuple):
        from_account, to_account, amount, currency = leg
        return wallet_pb2.TransferLeg(
            from_account=from_account, to_account=to_account, amount=amount, currency=currency
        )
    raise TypeError(f"a leg must be a Leg, a TransferLeg or a mapping of its fields, got {type(leg).__name__}")


def new_transfer_legs_request(
    transaction_id: str,
    legs: Iterable[LegLike],
    reference: Optional[str] = None,
    metadata: Optional[Mapping[str, str]] = None,
) -> wallet_pb2.TransferLegsRequest:
    """The ``TransferLegsRequest`` of ``transfer_legs``: the legs in the order given,
    ``reference`` and ``metadata`` optional (``None``: none) with the limits of a transfer's
    (see ``new_transfer_request``), one of each for the whole set."""
    return wallet_pb2.TransferLegsRequest(
        transaction_id=transaction_id,
        legs=[transfer_leg(leg) for leg in legs],
        reference=reference or "",
        metadata=_metadata(metadata),
    )


def _metadata(metadata: Optional[Mapping[str, str]]) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping of str to str, got {type(metadata).__name__}")
    return dict(metadata)


def authorize_request(
    transaction_id: str,
    from_account: str,
    to_account: str,
    amount: str,
    currency: str,
    timeout: datetime.timedelta,
    reference: Optional[str] = None,
    metadata: Optional[Mapping[str, str]] = None,
) -> wallet_pb2.AuthorizeTransferRequest:
    """The ``AuthorizeTransferRequest`` of ``authorize_transfer`` (``timeout`` a ``timedelta``:
    whole milliseconds, 1 ms to 30 days, else the node refuses it, HOLD_TIMEOUT_OUT_OF_RANGE;
    ``reference`` and ``metadata`` optional, as in ``new_transfer_request``)."""
    if not isinstance(timeout, datetime.timedelta):
        raise TypeError(f"timeout must be a datetime.timedelta, got {type(timeout).__name__}")
    request = wallet_pb2.AuthorizeTransferRequest(
        transaction_id=transaction_id,
        from_account=from_account,
        to_account=to_account,
        amount=amount,
        currency=currency,
        reference=reference or "",
        metadata=_metadata(metadata),
    )
    request.timeout.FromTimedelta(timeout)
    return request


def open_request(account: AccountLike) -> wallet_pb2.OpenAccountRequest:
    if isinstance(account, wallet_pb2.OpenAccountRequest):
        return account
    return wallet_pb2.OpenAccountRequest(**dict(account))


def new_open_request(
    account_id: str,
    currency: str,
    allow_negative_balance: bool = False,
    reference: Optional[str] = None,
    metadata: Optional[Mapping[str, str]] = None,
) -> wallet_pb2.OpenAccountRequest:
    """The ``OpenAccountRequest`` of ``open_account``: ``reference`` and ``metadata`` are
    optional (``None``: none), with the limits of a transfer's (see ``new_transfer_request``:
    ``Rejected`` INVALID_REFERENCE, INVALID_METADATA)."""
    return wallet_pb2.OpenAccountRequest(
        account_id=account_id,
        currency=currency,
        allow_negative_balance=allow_negative_balance,
        reference=reference or "",
        metadata=_metadata(metadata),
    )


def item_error(status: str, error: wallet_pb2.TransferError, replayed: bool = False) -> WalletError:
    """The typed error of one item of a streamed or batched call (``rejected``: ``Rejected``;
    else ``Indefinite``), with the code, reason, message and field the node gave; ``replayed``
    is a ``TransferResult``'s ``replayed`` (the error's ``replayed`` property)."""
    code = _CODES.get(error.code, grpc.StatusCode.UNKNOWN)
    details = ErrorDetails(
        code=code,
        message=error.message,
        reason=error.reason,
        domain="wallet.ledger",
        metadata={METADATA_REPLAYED: "true"} if replayed else {},
        field_violations=[(error.field, error.message)] if error.field else [],
    )
    reason = error.reason or code.name
    return Rejected(details, reason) if status == "rejected" else Indefinite(details, reason)


def malformed(message: str) -> Indefinite:
    return Indefinite(ErrorDetails(code=grpc.StatusCode.INTERNAL, message=message), "MALFORMED_RESPONSE")


def batch_outcomes(
    requests: Sequence[wallet_pb2.TransferRequest], response: wallet_pb2.TransferBatchResponse
) -> list[Optional[TransferOutcome]]:
    """Each item's outcome from a ``TransferBatch`` answer; ``None`` where it must be retried
    alone (``unavailable``: another node leads its source partition)."""
    if len(response.results) != len(requests):
        raise malformed(f"{len(response.results)} results for {len(requests)} transfers")
    outcomes: list[Optional[TransferOutcome]] = []
    for request, result in zip(requests, response.results):
        outcome = result_outcome(request, result)
        if outcome is FALLBACK:
            outcomes.append(None)
        else:
            outcomes.append(cast(TransferOutcome, outcome))
    return outcomes


def balance_at_request(
    account_id: str, position: Optional[str], timestamp_ms: Optional[int]
) -> query_pb2.GetBalanceAtRequest:
    if (position is None) == (timestamp_ms is None):
        raise ValueError("give exactly one of position and timestamp_ms")
    if position is not None:
        return query_pb2.GetBalanceAtRequest(account_id=account_id, position=position)
    return query_pb2.GetBalanceAtRequest(account_id=account_id, timestamp_ms=timestamp_ms)


class TransferResults:
    """An open ``SubmitTransfers`` stream (``WalletClient.submit_transfers``): an iterator of
    ``TransferResult`` as transfers become final, in any order. It is not retried; a failure of
    the whole stream raises a typed error (``Rejected`` or ``Indefinite``). ``cancel()`` ends
    it."""

    def __init__(self, call: Any):
        self._call = call

    def __iter__(self) -> Iterator[wallet_pb2.TransferResult]:
        return self

    def __next__(self) -> wallet_pb2.TransferResult:
        try:
            return cast(wallet_pb2.TransferResult, next(self._call))
        except grpc.RpcError as error:
            if _code_of(error) == grpc.StatusCode.CANCELLED and self._call.cancelled():
                raise StopIteration from None
            raise classify(error) from error

    def cancel(self) -> bool:
        return bool(self._call.cancel())


def _code_of(error: grpc.RpcError) -> Any:
    return error.code() if hasattr(error, "code") else None


def new_transaction_id() -> str:
    """A fresh idempotency key: a random UUID in canonical form. Make one per intended
    transfer and keep it for every retry."""
    return str(uuid.uuid4())


class WalletClient:
    """The write API with routing and retries. Writes go to the account's partition
    leader, learnt from NOT_LEADER hints; calls whose outcome is unknown are retried with
    the same request (same transaction_id) under ``policy``. Thread-safe: share one client
    between threads, which also lets concurrent ``transfer()`` calls share one
    ``SubmitTransfers`` stream per node (see ``wallet_ledger.pipeline``).

    ``tls`` (a ``TlsConfig``: CA, optional client certificate, server name) switches every
    channel to TLS; ``token`` is sent as ``authorization: Bearer <token>`` on every call.
    ``pipeline_transfers=False`` turns pipelining off: every ``transfer()`` is then a unary
    ``Transfer`` call. Close the client (``close()`` or ``with``) to end its streams and
    their reader threads."""

    def __init__(
        self,
        endpoints: Sequence[str],
        policy: RetryPolicy = RetryPolicy(),
        *,
        tls: Optional[TlsConfig] = None,
        token: Optional[str] = None,
        pipeline_transfers: bool = True,
    ):
        self._channels = Channels(
            endpoints, tls=tls, token=token, discovered_max=DISCOVERED_ENDPOINTS_MAX, write=True
        )
        self.policy = policy
        self.pipeline_transfers = pipeline_transfers
        self._leaders: dict[str, str] = {}
        self._lock = threading.Lock()
        #: Per node, the open stream ``transfer()`` calls share.
        self._pipes: dict[str, Pipe] = {}
        self._readers: list[threading.Thread] = []
        self._closed = False
        self._counters = Counters()
        #: Requests a pipe holds before they are written (tests lower it).
        self._pipe_queue_max = PIPE_QUEUE_MAX
        # A client dropped without close() still ends its streams (and so their threads).
        self._finalizer = weakref.finalize(self, _close_pipes, self._pipes, self._lock)

    def __enter__(self) -> "WalletClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Ends the ``SubmitTransfers`` streams (callers still waiting on them go on through
        the unary path, which then fails: the channels close too), waits for their reader
        threads, and closes the channels."""
        with self._lock:
            self._closed = True
            readers, self._readers = self._readers, []
        _close_pipes(self._pipes, self._lock)
        for reader in readers:
            if reader is not threading.current_thread():
                reader.join(timeout=5)
        self._channels.close()

    @property
    def endpoints(self) -> list[str]:
        """The configured endpoints (``host:port``, duplicates removed), in routing order."""
        return list(self._channels.endpoints)

    def leader(self, routing_key: str) -> Optional[str]:
        """The node last seen leading ``routing_key``'s (an account's) partition, if known."""
        with self._lock:
            return self._leaders.get(routing_key)

    def pipeline_stats(self) -> PipelineStats:
        """How many ``SubmitTransfers`` streams ``transfer()`` opened, how many transfers went
        down them, and how many calls went through the unary path."""
        return self._counters.stats()

    def _remember(self, routing_key: str, endpoint: str) -> None:
        with self._lock:
            if len(self._leaders) >= LEADER_CACHE_MAX:
                self._leaders.clear()
            self._leaders[routing_key] = endpoint

    def _stub(self, endpoint: str) -> wallet_pb2_grpc.WalletServiceStub:
        return wallet_pb2_grpc.WalletServiceStub(self._channels.get(endpoint))  # type: ignore[no-untyped-call]

    def _call(
        self,
        method: str,
        request: Any,
        routing_key: str = "",
        deadline: Optional[float] = None,
    ) -> Any:
        def send(endpoint: str, timeout: float) -> Any:
            return getattr(self._stub(endpoint), method)(request, timeout=timeout)

        remember: Optional[Callable[[str], None]] = None
        if routing_key:
            remember = lambda endpoint: self._remember(routing_key, endpoint)  # noqa: E731
        return call_with_retry(
            send,
            self._channels.endpoints,
            self.policy,
            first=self.leader(routing_key) if routing_key else None,
            on_success=remember,
            deadline=deadline,
        )

    def open_account(
        self,
        account_id: str,
        currency: str,
        *,
        allow_negative_balance: bool = False,
        reference: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> wallet_pb2.Account:
        """Opens a single-currency account; the same call again is a no-op success, with
        other parameters it is ``Rejected`` (ALREADY_EXISTS
        ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS).

        ``reference`` (the caller's own, e.g. a customer number) and ``metadata`` (string keys
        and values) are optional: set when the account is opened and never changed, returned
        by every read of it (``Account`` and the read node's ``Balance``: ``reference``,
        ``metadata``). They are among the parameters compared when the account exists already
        (another reference or metadata is ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS). Over their
        limits (see ``new_transfer_request``) the call is ``Rejected`` INVALID_ARGUMENT,
        INVALID_REFERENCE or INVALID_METADATA, and no account is opened."""
        request = new_open_request(account_id, currency, allow_negative_balance, reference, metadata)
        response = cast(wallet_pb2.OpenAccountResponse, self._call("OpenAccount", request, account_id))
        return response.account

    def transfer(
        self,
        *,
        transaction_id: str,
        from_account: str,
        to_account: str,
        amount: str,
        currency: str,
        reference: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> wallet_pb2.TransferResponse:
        """Moves ``amount`` (a decimal string, e.g. ``"12.34"``) and answers once the
        transfer is final. ``transaction_id`` (from ``new_transaction_id()``) is the
        idempotency key: keep it until the outcome is known. Every automatic retry sends it
        again, and so should yours after an ``Indefinite`` error: a retry returns the
        original outcome and never pays twice.

        Concurrent calls on one client go down one ``SubmitTransfers`` stream per node
        (unless ``pipeline_transfers`` is off); each still gets exactly its own answer or
        error, within its own deadline (``policy.total_deadline``), and waits for nobody
        else's answer. A call the stream leaves without a definite outcome within
        ``policy.call_timeout`` (the node does not lead the account's partition, the stream
        broke or was refused, its queue is full) goes on alone through the unary
        ``Transfer`` retry loop, with the same id, within what is left of its deadline.

        ``reference`` (the caller's own, e.g. an order number) and ``metadata`` (string keys
        and values) are optional: stored with the transfer and returned by ``get_transfer``,
        ``QueryClient.watch_transfer`` and ``list_transfers``. They are part of the request a
        retry must repeat: the same id with another reference or metadata is ``Rejected``
        TRANSACTION_ID_REUSED. Over their limits (see ``new_transfer_request``) the call is
        ``Rejected`` INVALID_ARGUMENT, INVALID_REFERENCE or INVALID_METADATA."""
        request = new_transfer_request(
            transaction_id, from_account, to_account, amount, currency, reference, metadata
        )
        deadline = time.monotonic() + self.policy.total_deadline
        if self.pipeline_transfers:
            answer = final_answer(self._transfer_pipelined(request, deadline), deadline)
            if answer is not None:
                return answer
        self._counters.went_unary()
        response = self._call("Transfer", request, from_account, deadline=deadline)
        return cast(wallet_pb2.TransferResponse, response)

    def _transfer_pipelined(self, request: wallet_pb2.TransferRequest, deadline: float) -> Outcome:
        """``request`` down the stream to the node it would go to: its definite outcome, or
        ``FALLBACK`` if the stream gave none in time and the unary path must go on."""
        node = self.leader(request.from_account) or self._channels.endpoints[0]
        pipe = self._pipe(node)
        if pipe is None:
            return FALLBACK
        waiter = pipe.send(request)
        if waiter is None:
            return FALLBACK
        self._counters.transfer_sent()
        return pipe.wait(waiter, min(self.policy.call_timeout, deadline - time.monotonic()))

    def _pipe(self, node: str) -> Optional[Pipe]:
        """The open stream to ``node``, or a new one with its reader thread."""
        with self._lock:
            if self._closed:
                return None
            pipe = self._pipes.get(node)
            if pipe is not None and not pipe.closed:
                return pipe
            pipe = Pipe(node, self._pipe_queue_max)
            self._pipes[node] = pipe
            reader = threading.Thread(
                target=_read_pipe,
                args=(weakref.ref(self), self._stub(node), pipe),
                name=f"wallet-ledger-pipe {node}",
                daemon=True,
            )
            self._readers = [r for r in self._readers if r.is_alive()]
            self._readers.append(reader)
        self._counters.stream_opened()
        reader.start()
        return pipe

    def transfer_legs(
        self,
        legs: Sequence[LegLike],
        *,
        transaction_id: Optional[str] = None,
        reference: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> wallet_pb2.TransferResponse:
        """A multi-leg transfer (``TransferLegs``): 1 to 64 legs (``Leg(from_account,
        to_account, amount, currency)``, all in one currency) that move money all together or
        not at all, applied in the order given, and answers once it is final, like
        ``transfer()`` (``status`` "success", ``transaction_id``, ``consistency_token``,
        ``replayed``). A refusal moves nothing.

        ``transaction_id`` is the idempotency key, shared with transfers and holds; ``None``
        makes a fresh one (``new_transaction_id()``), returned as the response's
        ``transaction_id`` and, on failure, as the error's ``transaction_id``. Every automatic
        retry sends the same request, id included, and so should yours after an
        ``Indefinite`` error: the same id and legs answer the original outcome (``replayed``);
        the same id with other legs (or a transfer or hold under it) is ``Rejected``
        ALREADY_EXISTS TRANSACTION_ID_REUSED. ``reference`` and ``metadata`` (optional, one of
        each for the whole set) are as for ``transfer()``.

        Routed to the leader of the partition of the first leg's ``from_account`` and retried
        like the unary ``Transfer`` (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED,
        CANCELLED: the same request again; it does not go down the ``SubmitTransfers``
        stream). Refusals are ``Rejected``; a refusal of one leg (e.g. FAILED_PRECONDITION
        INSUFFICIENT_FUNDS, or INVALID_ARGUMENT INVALID_AMOUNT with ``field``
        ``legs``) names the index of the first leg refused, 0-based, as the
        error's ``leg`` (``ErrorInfo`` metadata ``leg``). The whole set is refused as
        INVALID_ARGUMENT (field ``legs``) LEGS_OUT_OF_RANGE (no legs, more than 64),
        REPEATED_LEG (two legs with the same from_account and to_account: merge them) or
        MIXED_CURRENCIES.

        A set may span partitions. It is applied all or none, step by step: every partition's
        part is checked and its debits taken first, then the home partition (that of the
        first leg's ``from_account``) decides, then every part is resolved; the answer comes
        once every part is. A refusal by any part refuses the whole set with that part's
        reason and ``leg``, and nothing moves anywhere. The ``consistency_token`` names a
        position in every partition the set touches (a retry's may name other ones than the
        first answer's). Nodes before 0.3, which did not move sets across partitions, refuse
        such a set as FAILED_PRECONDITION LEGS_SPAN_PARTITIONS."""
        request = new_transfer_legs_request(
            new_transaction_id() if transaction_id is None else transaction_id, legs, reference, metadata
        )
        key = request.legs[0].from_account if request.legs else ""
        try:
            return cast(wallet_pb2.TransferResponse, self._call("TransferLegs", request, key))
        except WalletError as error:
            error.transaction_id = request.transaction_id
            raise

    def authorize_transfer(
        self,
        *,
        transaction_id: str,
        from_account: str,
        to_account: str,
        amount: str,
        currency: str,
        timeout: datetime.timedelta,
        reference: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> wallet_pb2.HoldResponse:
        """Holds ``amount`` on ``from_account`` for ``timeout`` (a ``timedelta``, 1 ms to 30
        days): the account's available amount drops, its balance does not. Capture it
        (``capture_transfer``) or void it (``void_transfer``) by ``transaction_id`` before it
        expires. Answers the hold (``response.transfer``, status PENDING, ``hold.expires_at``)
        and ``response.replayed``; idempotent like ``transfer()`` (same id, same hold: the
        original answer). Routed to the leader of ``from_account``'s partition, retried like
        ``Transfer`` (unary: holds do not go down the ``SubmitTransfers`` stream).
        ``reference`` and ``metadata`` as for ``transfer()``: the hold keeps them."""
        request = authorize_request(
            transaction_id, from_account, to_account, amount, currency, timeout, reference, metadata
        )
        return cast(wallet_pb2.HoldResponse, self._call("AuthorizeTransfer", request, from_account))

    def capture_transfer(
        self, *, transaction_id: str, from_account: str, amount: Optional[str] = None
    ) -> wallet_pb2.HoldResponse:
        """Moves ``amount`` (at most the held amount; ``None``: all of it) of the hold
        ``transaction_id`` of ``from_account`` to its ``to_account`` and releases the rest,
        exactly once (a retry with the same amount answers the capture, ``replayed``).
        Refusals are ``Rejected`` with the reason: HOLD_NOT_FOUND, CAPTURE_EXCEEDS_HOLD,
        HOLD_ALREADY_CAPTURED, HOLD_ALREADY_VOIDED, HOLD_EXPIRED, ..."""
        request = wallet_pb2.CaptureTransferRequest(
            transaction_id=transaction_id, from_account=from_account, amount=amount or ""
        )
        return cast(wallet_pb2.HoldResponse, self._call("CaptureTransfer", request, from_account))

    def void_transfer(self, *, transaction_id: str, from_account: str) -> wallet_pb2.HoldResponse:
        """Releases the pending hold ``transaction_id`` of ``from_account`` (status VOIDED); a
        retry answers the void (``replayed``). ``Rejected`` HOLD_ALREADY_CAPTURED after a
        capture, HOLD_EXPIRED after the expiry, ..."""
        request = wallet_pb2.VoidTransferRequest(transaction_id=transaction_id, from_account=from_account)
        return cast(wallet_pb2.HoldResponse, self._call("VoidTransfer", request, from_account))

    def freeze_account(self, account_id: str) -> wallet_pb2.Account:
        """Freezes ``account_id`` (``FreezeAccount``): until unfrozen it neither sends nor
        receives (a transfer from or to it, a hold from it, a capture touching it are
        ``Rejected`` ACCOUNT_FROZEN). Answers the account after the change (``status``
        ``ACCOUNT_STATUS_FROZEN``). Idempotent by effect: freezing a frozen account answers it
        unchanged, so it is routed to the leader of the account's partition and retried like
        ``open_account()``. ``Rejected`` ACCOUNT_NOT_FOUND, ACCOUNT_CLOSED; needs the admin
        scope when the nodes check tokens."""
        request = wallet_pb2.FreezeAccountRequest(account_id=account_id)
        response = cast(wallet_pb2.FreezeAccountResponse, self._call("FreezeAccount", request, account_id))
        return response.account

    def unfreeze_account(self, account_id: str) -> wallet_pb2.Account:
        """Unfreezes ``account_id`` (``UnfreezeAccount``; status back to
        ``ACCOUNT_STATUS_ACTIVE``). Idempotent, routed and retried like ``freeze_account()``."""
        request = wallet_pb2.UnfreezeAccountRequest(account_id=account_id)
        response = cast(wallet_pb2.UnfreezeAccountResponse, self._call("UnfreezeAccount", request, account_id))
        return response.account

    def close_account(self, account_id: str) -> wallet_pb2.Account:
        """Closes ``account_id`` for good (``CloseAccount``; status ``ACCOUNT_STATUS_CLOSED``):
        afterwards it neither sends nor receives (ACCOUNT_CLOSED) and stays readable. Only at a
        zero balance (else ``Rejected`` ACCOUNT_NOT_EMPTY), with no pending hold from it
        (ACCOUNT_HAS_PENDING_HOLDS) and no cross-partition transfer from it in flight
        (ACCOUNT_HAS_TRANSFERS_IN_FLIGHT: call again shortly). Idempotent, routed and retried
        like ``freeze_account()``."""
        request = wallet_pb2.CloseAccountRequest(account_id=account_id)
        response = cast(wallet_pb2.CloseAccountResponse, self._call("CloseAccount", request, account_id))
        return response.account

    def set_overdraft_limit(self, account_id: str, overdraft_limit: str, currency: str) -> wallet_pb2.Account:
        """Sets how far below zero the ordinary account ``account_id`` may go
        (``SetOverdraftLimit``): ``overdraft_limit`` is a decimal string in ``currency``, the
        account's (``"50.00"``; ``"0"`` for none, the default). A transfer or hold is then
        ``Rejected`` INSUFFICIENT_FUNDS only beyond ``available`` + the limit. Answers the
        account (``overdraft_limit`` set). ``Rejected`` OVERDRAFT_UNLIMITED for an account
        opened with ``allow_negative_balance``, CURRENCY_MISMATCH for another currency,
        INVALID_AMOUNT / AMOUNT_OUT_OF_RANGE for a bad limit. Idempotent, routed and retried
        like ``freeze_account()``."""
        request = wallet_pb2.SetOverdraftLimitRequest(
            account_id=account_id, overdraft_limit=overdraft_limit, currency=currency
        )
        response = cast(wallet_pb2.SetOverdraftLimitResponse, self._call("SetOverdraftLimit", request, account_id))
        return response.account

    def get_account(self, account_id: str) -> wallet_pb2.GetAccountResponse:
        """The authoritative account, read linearizably, with the position it reflects."""
        request = wallet_pb2.GetAccountRequest(account_id=account_id)
        return cast(wallet_pb2.GetAccountResponse, self._call("GetAccount", request))

    def get_transfer(self, transaction_id: str) -> wallet_pb2.Transfer:
        """A transfer's status and outcome; ``Rejected`` NOT_FOUND if the id is unknown."""
        request = wallet_pb2.GetTransferRequest(transaction_id=transaction_id)
        response = cast(wallet_pb2.GetTransferResponse, self._call("GetTransfer", request))
        return response.transfer


    def transfer_batch(self, transfers: Sequence[TransferLike]) -> list[TransferOutcome]:
        """Decides 1 to 1,024 transfers in one ``TransferBatch`` call (each on its own, as
        ``transfer()`` would: a batch is not atomic) and answers one outcome per transfer, in
        order: its ``TransferResponse`` or its typed error (``Rejected``; ``Indefinite`` if even
        the retries left it unknown). The batch goes to the known leader of its first item's
        source and is retried whole, same ids, when its outcome is unknown; items answered
        ``unavailable`` (another node leads their source partition) then go through
        ``transfer()``'s unary retry loop with the same id. Raises only when the batch as a
        whole failed (e.g. ``Rejected`` INVALID_ARGUMENT for an empty or oversized batch)."""
        requests = [transfer_request(t) for t in transfers]
        key = requests[0].from_account if requests else ""
        response = self._call("TransferBatch", wallet_pb2.TransferBatchRequest(transfers=requests), key)
        outcomes = batch_outcomes(requests, cast(wallet_pb2.TransferBatchResponse, response))
        done: list[TransferOutcome] = []
        for request, outcome in zip(requests, outcomes):
            if outcome is None:
                try:
                    outcome = cast(wallet_pb2.TransferResponse, self._call("Transfer", request, request.from_account))
                except WalletError as error:
                    outcome = error
            done.append(outcome)
        return done

    def open_accounts(self, accounts: Sequence[AccountLike]) -> list[AccountOutcome]:
        """Opens many accounts through one ``OpenAccounts`` stream and answers one outcome per
        account, in order: the ``Account``, or its typed error. Items the stream answers
        ``unavailable`` (another node leads their partition, or the stream broke) go through
        ``open_account()``'s retry loop: reopening an open account with the same parameters
        is safe. Each item may carry its own ``reference`` and ``metadata``."""
        requests = [open_request(a) for a in accounts]
        outcomes: list[Optional[AccountOutcome]] = [None] * len(requests)
        pending: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            pending.setdefault(request.account_id, []).append(i)
        endpoint = (self.leader(requests[0].account_id) if requests else None) or self._channels.endpoints[0]
        try:
            call = self._stub(endpoint).OpenAccounts(iter(requests), timeout=self.policy.total_deadline)
            for result in call:
                indexes = pending.get(result.account_id)
                if not indexes or result.status == "unavailable":
                    continue
                i = indexes.pop(0)
                if result.status == "success":
                    outcomes[i] = result.account
                    self._remember(result.account_id, endpoint)
                else:
                    outcomes[i] = item_error(result.status, result.error)
        except grpc.RpcError:
            pass  # the rest goes unary
        for i, outcome in enumerate(outcomes):
            if outcome is None:
                request = requests[i]
                try:
                    outcomes[i] = cast(
                        wallet_pb2.OpenAccountResponse, self._call("OpenAccount", request, request.account_id)
                    ).account
                except WalletError as error:
                    outcomes[i] = error
        return [cast(AccountOutcome, o) for o in outcomes]

    def submit_transfers(
        self,
        transfers: Iterable[TransferLike],
        *,
        endpoint: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> TransferResults:
        """Opens a raw ``SubmitTransfers`` stream (the high-throughput path) to ``endpoint``
        (default: the first configured), sending ``transfers`` (any iterable, consumed as the
        stream goes): results arrive as transfers become final, in any order. Nothing is
        retried: items another node leads come back ``unavailable`` (send those through
        ``transfer()``); ``item_error`` decodes a result's error. ``transfer()`` already
        pipelines concurrent calls down such streams; this is for callers that manage their
        own."""
        target = endpoint or self._channels.endpoints[0]
        requests = (transfer_request(t) for t in transfers)
        return TransferResults(self._stub(target).SubmitTransfers(requests, timeout=timeout))

    def get_cluster_status(
        self, *, endpoint: Optional[str] = None, include_state_digest: bool = False
    ) -> cluster_pb2.GetClusterStatusResponse:
        """What a write node knows about the cluster (``ClusterService``): ``endpoint``, or the
        first configured node that answers. ``include_state_digest`` hashes every partition's
        state (costly; needs the admin scope on a secured node)."""
        return _cluster_status(self._channels, self.policy, endpoint, include_state_digest)


def _cluster_status(
    channels: Channels, policy: RetryPolicy, endpoint: Optional[str], digest: bool
) -> cluster_pb2.GetClusterStatusResponse:
    request = cluster_pb2.GetClusterStatusRequest(include_state_digest=digest)

    def send(target: str, timeout: float) -> cluster_pb2.GetClusterStatusResponse:
        stub = cluster_pb2_grpc.ClusterServiceStub(channels.get(target))  # type: ignore[no-untyped-call]
        return cast(cluster_pb2.GetClusterStatusResponse, stub.GetClusterStatus(request, timeout=timeout))

    targets = [endpoint] if endpoint else channels.endpoints
    return call_with_retry(send, targets, policy)


def _read_pipe(
    client: "weakref.ReferenceType[WalletClient]",
    stub: wallet_pb2_grpc.WalletServiceStub,
    pipe: Pipe,
) -> None:
    """A pipe's reader thread: opens its stream, hands each result to its caller (a success
    records the node as the leader of the caller's routing key) until the stream ends, then
    closes the pipe (its callers still waiting go on alone) and forgets it, so that the next
    call opens a new stream. Holds the client weakly."""
    try:
        call = stub.SubmitTransfers(pipe.requests())
        pipe.opened(call)
        for result in call:
            succeeded = pipe.resolve(result)
            if succeeded is not None:
                owner = client()
                if owner is not None:
                    owner._remember(succeeded.from_account, pipe.node)
                del owner
    except grpc.RpcError:
        pass  # refused (UNIMPLEMENTED, UNAUTHENTICATED, unreachable, ...) or broken
    finally:
        pipe.close()
        owner = client()
        if owner is not None:
            with owner._lock:
                if owner._pipes.get(pipe.node) is pipe:
                    del owner._pipes[pipe.node]


def _close_pipes(pipes: dict[str, Pipe], lock: threading.Lock) -> None:
    with lock:
        closing = list(pipes.values())
        pipes.clear()
    for pipe in closing:
        pipe.close()


class QueryClient:
    """The read API of one or more read nodes (all fold the same log, so any will do).
    ``tls`` and ``token`` as for ``WalletClient``."""

    def __init__(
        self,
        endpoints: Sequence[str],
        policy: RetryPolicy = RetryPolicy(),
        *,
        tls: Optional[TlsConfig] = None,
        token: Optional[str] = None,
    ):
        self._channels = Channels(endpoints, tls=tls, token=token)
        self.policy = policy

    def __enter__(self) -> "QueryClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channels.close()

    def _stub(self, endpoint: str) -> query_pb2_grpc.QueryServiceStub:
        return query_pb2_grpc.QueryServiceStub(self._channels.get(endpoint))  # type: ignore[no-untyped-call]

    def get_balance(
        self, account_id: str, consistency_token: str = ""
    ) -> query_pb2.GetBalanceResponse:
        """The projected balance; with a token from the write API, at least that fresh."""
        request = query_pb2.GetBalanceRequest(
            account_id=account_id, consistency_token=consistency_token
        )
        def send(endpoint: str, timeout: float) -> query_pb2.GetBalanceResponse:
            response = self._stub(endpoint).GetBalance(request, timeout=timeout)
            return cast(query_pb2.GetBalanceResponse, response)

        return call_with_retry(send, self._channels.endpoints, self.policy)

    def _unary(self, method: str, request: Any) -> Any:
        def send(endpoint: str, timeout: float) -> Any:
            return getattr(self._stub(endpoint), method)(request, timeout=timeout)

        return call_with_retry(send, self._channels.endpoints, self.policy)

    def list_transfers(
        self, account_id: str, *, page_token: str = "", page_size: int = 0
    ) -> query_pb2.ListTransfersResponse:
        """One page of the account's balance changes (one per transfer that moved its money),
        newest first; ``next_page_token`` (empty on the last page) asks for the next.
        ``page_size`` 0 is the read node's default."""
        request = query_pb2.ListTransfersRequest(account_id=account_id, page_token=page_token, page_size=page_size)
        return cast(query_pb2.ListTransfersResponse, self._unary("ListTransfers", request))

    def iter_transfers(self, account_id: str, *, page_size: int = 0) -> Iterator[query_pb2.HistoryEntry]:
        """Every balance change of the account, newest first, fetching page after page as
        the iteration goes (history is append-only, so the pages are stable)."""
        page_token = ""
        while True:
            page = self.list_transfers(account_id, page_token=page_token, page_size=page_size)
            yield from page.entries
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    def get_balance_at(
        self, account_id: str, *, position: Optional[str] = None, timestamp_ms: Optional[int] = None
    ) -> query_pb2.Balance:
        """The account as of a past point: exactly one of ``position`` (a position token of
        its partition: the balance right after that entry) or ``timestamp_ms`` (milliseconds
        since the Unix epoch: the balance after the last change at or before it)."""
        request = balance_at_request(account_id, position, timestamp_ms)
        return cast(query_pb2.GetBalanceAtResponse, self._unary("GetBalanceAt", request)).balance

    def get_cluster_status(
        self, *, endpoint: Optional[str] = None, include_state_digest: bool = False
    ) -> cluster_pb2.GetClusterStatusResponse:
        """What a read node knows about the cluster: ``endpoint``, or the first configured
        one that answers."""
        return _cluster_status(self._channels, self.policy, endpoint, include_state_digest)

    def _open_stream(self, method: str) -> Callable[[str, Any, Optional[float]], Any]:
        def open_stream(endpoint: str, request: Any, timeout: Optional[float]) -> Any:
            return getattr(self._stub(endpoint), method)(request, timeout=timeout)

        return open_stream

    def watch_balances(
        self,
        account_ids: Iterable[str],
        resume_after_sequence: Optional[Mapping[str, int]] = None,
        timeout: Optional[float] = None,
        *,
        max_resumes: Optional[int] = None,
    ) -> BalanceWatch:
        """The current balance of each account (or, for the accounts in
        ``resume_after_sequence``, every change after that sequence), then every change, per
        account in sequence order. The watch resumes by itself: after a disconnect, a read
        node's restart or a ``WATCH_LAGGED`` cut-off it reconnects (on the next read node
        given, after a backoff) and resumes every account after the last sequence it
        delivered, never skipping or repeating an update. ``timeout`` (seconds) bounds the
        whole watch and ``max_resumes`` the reconnections: past either it raises
        ``Indefinite``; a definite error (e.g. ``ACCOUNT_NOT_FOUND``) raises ``Rejected``.
        ``.cancel()``, from any thread, ends the iteration quietly."""
        return BalanceWatch(
            self._open_stream("WatchBalances"),
            self._channels.endpoints,
            list(account_ids),
            resume_after_sequence,
            timeout=timeout,
            max_resumes=max_resumes,
        )

    def watch_transfer(
        self, transaction_id: str, *, timeout: Optional[float] = None, max_resumes: Optional[int] = None
    ) -> TransferWatch:
        """The transfer's state, then every newer state until the final one (then the
        iteration stops). Resumes by itself like ``watch_balances``, delivering only versions
        newer than the last delivered. An id the read node does not know yet is waited for
        (bounded by the node)."""
        return TransferWatch(
            self._open_stream("WatchTransfer"),
            self._channels.endpoints,
            transaction_id,
            timeout=timeout,
            max_resumes=max_resumes,
        )
