"""Clients of the write nodes (``WalletService``) and of a read node (``QueryService``)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Protocol, Sequence, TypeVar, cast

import grpc

from ._proto.wallet.v1 import query_pb2, query_pb2_grpc, wallet_pb2, wallet_pb2_grpc
from .auth import Channels, TlsConfig
from .batching import BATCH_IN_FLIGHT_MAX_DEFAULT, FALLBACK, Batcher, BatchStats
from .retry import RetryPolicy, call_with_retry

T = TypeVar("T")

#: Channels kept to nodes learnt from leader hints rather than configured.
DISCOVERED_ENDPOINTS_MAX = 16
#: Routing keys (accounts) whose last known leader is remembered.
LEADER_CACHE_MAX = 4096


class BalanceWatch(Protocol):
    """What ``QueryClient.watch_balances`` returns: an iterator of updates that is also a
    ``grpc.Call`` (``cancel()`` ends the watch; a failure raises ``grpc.RpcError``)."""

    def __iter__(self) -> Iterator[query_pb2.BalanceUpdate]: ...

    def __next__(self) -> query_pb2.BalanceUpdate: ...

    def cancel(self) -> bool: ...


def new_transaction_id() -> str:
    """A fresh idempotency key: a random UUID in canonical form. Make one per intended
    transfer and keep it for every retry."""
    return str(uuid.uuid4())


class WalletClient:
    """The write API with routing and retries. Writes go to the account's partition
    leader, learnt from NOT_LEADER hints; calls whose outcome is unknown are retried with
    the same request (same transaction_id) under ``policy``. Thread-safe: share one client
    between threads, which also lets concurrent ``transfer()`` calls share ``TransferBatch``
    calls (see ``wallet_ledger.batching``).

    ``tls`` (a ``TlsConfig``: CA, optional client certificate, server name) switches every
    channel to TLS; ``token`` is sent as ``authorization: Bearer <token>`` on every call.
    ``batch_in_flight_max`` bounds the batches in flight per node (0: no batching, every
    ``transfer()`` is a unary ``Transfer`` call)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        policy: RetryPolicy = RetryPolicy(),
        *,
        tls: Optional[TlsConfig] = None,
        token: Optional[str] = None,
        batch_in_flight_max: int = BATCH_IN_FLIGHT_MAX_DEFAULT,
    ):
        if batch_in_flight_max < 0:
            raise ValueError("batch_in_flight_max must be 0 (no batching) or more")
        self._channels = Channels(
            endpoints, tls=tls, token=token, discovered_max=DISCOVERED_ENDPOINTS_MAX
        )
        self.policy = policy
        self._leaders: dict[str, str] = {}
        self._lock = threading.Lock()
        self._batcher: Optional[Batcher] = None
        self._unary_transfers = 0
        self._transfers = 0
        if batch_in_flight_max > 0:
            self._batcher = Batcher(
                self._send_batch,
                self._remember_batch,
                batch_in_flight_max,
                policy.call_timeout,
            )

    def __enter__(self) -> "WalletClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channels.close()

    @property
    def endpoints(self) -> list[str]:
        """The configured endpoints (``host:port``, duplicates removed), in routing order."""
        return list(self._channels.endpoints)

    def leader(self, routing_key: str) -> Optional[str]:
        """The node last seen leading ``routing_key``'s (an account's) partition, if known."""
        with self._lock:
            return self._leaders.get(routing_key)

    def stats(self) -> BatchStats:
        """Counters of ``transfer()`` calls: how many, how many ``TransferBatch`` calls
        carried them, how many went unary."""
        batched = self._batcher.stats() if self._batcher is not None else BatchStats()
        with self._lock:
            return BatchStats(
                transfers=self._transfers,
                batches=batched.batches,
                batched_transfers=batched.batched_transfers,
                largest_batch=batched.largest_batch,
                unary_transfers=self._unary_transfers,
                failed_batches=batched.failed_batches,
            )

    def _remember(self, routing_key: str, endpoint: str) -> None:
        with self._lock:
            if len(self._leaders) >= LEADER_CACHE_MAX:
                self._leaders.clear()
            self._leaders[routing_key] = endpoint

    def _remember_batch(self, endpoint: str, requests: Sequence[wallet_pb2.TransferRequest]) -> None:
        with self._lock:
            for request in requests:
                if len(self._leaders) >= LEADER_CACHE_MAX:
                    self._leaders.clear()
                self._leaders[request.from_account] = endpoint

    def _stub(self, endpoint: str) -> wallet_pb2_grpc.WalletServiceStub:
        return wallet_pb2_grpc.WalletServiceStub(self._channels.get(endpoint))  # type: ignore[no-untyped-call]

    def _send_batch(
        self, endpoint: str, request: wallet_pb2.TransferBatchRequest, timeout: float
    ) -> wallet_pb2.TransferBatchResponse:
        response = self._stub(endpoint).TransferBatch(request, timeout=timeout)
        return cast(wallet_pb2.TransferBatchResponse, response)

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
        self, account_id: str, currency: str, *, allow_negative_balance: bool = False
    ) -> wallet_pb2.Account:
        """Opens a single-currency account; the same call again is a no-op success, with
        other parameters it is ``Rejected`` (ALREADY_EXISTS)."""
        request = wallet_pb2.OpenAccountRequest(
            account_id=account_id,
            currency=currency,
            allow_negative_balance=allow_negative_balance,
        )
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
    ) -> wallet_pb2.TransferResponse:
        """Moves ``amount`` (a decimal string, e.g. ``"12.34"``) and answers once the
        transfer is final. ``transaction_id`` (from ``new_transaction_id()``) is the
        idempotency key: keep it until the outcome is known. Every automatic retry sends it
        again, and so should yours after an ``Indefinite`` error: a retry returns the
        original outcome and never pays twice.

        Concurrent calls on one client travel together in ``TransferBatch`` calls; each
        still gets exactly its own answer or error, within its own deadline
        (``policy.total_deadline``)."""
        request = wallet_pb2.TransferRequest(
            transaction_id=transaction_id,
            from_account=from_account,
            to_account=to_account,
            amount=amount,
            currency=currency,
        )
        deadline = time.monotonic() + self.policy.total_deadline
        with self._lock:
            self._transfers += 1
        node = self.leader(from_account) or self._channels.endpoints[0]
        if self._batcher is not None and self._batcher.supports(node):
            outcome = self._batcher.submit(node, request, deadline)
            if isinstance(outcome, wallet_pb2.TransferResponse):
                return outcome
            if outcome is not FALLBACK:
                raise cast(Exception, outcome)
        with self._lock:
            self._unary_transfers += 1
        response = self._call("Transfer", request, from_account, deadline=deadline)
        return cast(wallet_pb2.TransferResponse, response)

    def get_account(self, account_id: str) -> wallet_pb2.GetAccountResponse:
        """The authoritative account, read linearizably, with the position it reflects."""
        request = wallet_pb2.GetAccountRequest(account_id=account_id)
        return cast(wallet_pb2.GetAccountResponse, self._call("GetAccount", request))

    def get_transfer(self, transaction_id: str) -> wallet_pb2.Transfer:
        """A transfer's status and outcome; ``Rejected`` NOT_FOUND if the id is unknown."""
        request = wallet_pb2.GetTransferRequest(transaction_id=transaction_id)
        response = cast(wallet_pb2.GetTransferResponse, self._call("GetTransfer", request))
        return response.transfer


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

    def watch_balances(
        self,
        account_ids: Iterable[str],
        resume_after_sequence: Optional[Mapping[str, int]] = None,
        timeout: Optional[float] = None,
    ) -> BalanceWatch:
        """The current balance of each account, then every change, in order. The returned
        iterator is also a ``grpc.Call``: ``.cancel()`` ends the watch. To resume after an
        error, watch again with the last ``balance.sequence`` seen per account."""
        request = query_pb2.WatchBalancesRequest(
            account_ids=list(account_ids),
            resume_after_sequence=dict(resume_after_sequence or {}),
        )
        stream = self._stub(self._channels.endpoints[0]).WatchBalances(request, timeout=timeout)
        return cast(BalanceWatch, stream)
