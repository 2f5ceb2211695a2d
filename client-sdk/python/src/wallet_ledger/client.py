"""Clients of the write nodes (``WalletService``) and of a read node (``QueryService``)."""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Protocol, Sequence, TypeVar, cast

import grpc

from ._proto.wallet.v1 import query_pb2, query_pb2_grpc, wallet_pb2, wallet_pb2_grpc
from .auth import Channels, TlsConfig
from .pipeline import FALLBACK, PIPE_QUEUE_MAX, Counters, Outcome, Pipe, PipelineStats, final_answer
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

        Concurrent calls on one client go down one ``SubmitTransfers`` stream per node
        (unless ``pipeline_transfers`` is off); each still gets exactly its own answer or
        error, within its own deadline (``policy.total_deadline``), and waits for nobody
        else's answer. A call the stream leaves without a definite outcome within
        ``policy.call_timeout`` (the node does not lead the account's partition, the stream
        broke or was refused, its queue is full) goes on alone through the unary
        ``Transfer`` retry loop, with the same id, within what is left of its deadline."""
        request = wallet_pb2.TransferRequest(
            transaction_id=transaction_id,
            from_account=from_account,
            to_account=to_account,
            amount=amount,
            currency=currency,
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

    def get_account(self, account_id: str) -> wallet_pb2.GetAccountResponse:
        """The authoritative account, read linearizably, with the position it reflects."""
        request = wallet_pb2.GetAccountRequest(account_id=account_id)
        return cast(wallet_pb2.GetAccountResponse, self._call("GetAccount", request))

    def get_transfer(self, transaction_id: str) -> wallet_pb2.Transfer:
        """A transfer's status and outcome; ``Rejected`` NOT_FOUND if the id is unknown."""
        request = wallet_pb2.GetTransferRequest(transaction_id=transaction_id)
        response = cast(wallet_pb2.GetTransferResponse, self._call("GetTransfer", request))
        return response.transfer


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
