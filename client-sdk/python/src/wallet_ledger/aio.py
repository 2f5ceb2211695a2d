"""The asyncio clients (``grpc.aio``): ``AsyncWalletClient`` and ``AsyncQueryClient``, the
twins of ``WalletClient`` and ``QueryClient`` with the same routing, retry loop
(``retry.Attempts``), errors, TLS and tokens, and the same transparent batching of
``transfer()`` (see ``wallet_ledger.batching`` for the algorithm).

Batching in asyncio needs no hand-off between callers: each batch is sent by a task of the
client's. A call that finds its node's lane below ``batch_in_flight_max`` starts a task with
itself and whatever is queued; otherwise it queues. When a batch's task ends, it starts the
next task with everything queued (the slot passes on) or frees the slot. Each caller awaits
its own result with its own deadline; a cancelled or timed-out caller that is still queued
leaves the queue unsent.

    async with AsyncWalletClient(["127.0.0.1:50051"]) as wallet:
        done = await wallet.transfer(transaction_id=new_transaction_id(), from_account="a",
                                     to_account="b", amount="1.00", currency="USD")
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Deque, Iterable, Mapping, Optional, Protocol, Sequence, cast

import grpc
import grpc.aio

from ._proto.wallet.v1 import query_pb2, query_pb2_grpc, wallet_pb2, wallet_pb2_grpc
from .auth import TlsConfig, authorization_metadata, normalize_endpoint
from .batching import (
    _BATCH_TIMEOUT_MIN,
    BATCH_IN_FLIGHT_MAX_DEFAULT,
    FALLBACK,
    TRANSFER_BATCH_MAX,
    BatchStats,
    Outcome,
    result_outcome,
)
from .client import DISCOVERED_ENDPOINTS_MAX, LEADER_CACHE_MAX
from .errors import deadline_exceeded
from .retry import Attempts, RetryPolicy

Metadata = tuple[tuple[str, str], ...]


class _AioChannels:
    """One ``grpc.aio`` channel per node, made on first use (inside the event loop)."""

    def __init__(self, endpoints: Sequence[str], tls: Optional[TlsConfig], token: Optional[str]):
        self.tls = tls
        self.endpoints = list(dict.fromkeys(normalize_endpoint(e, tls is not None) for e in endpoints))
        if not self.endpoints:
            raise ValueError("at least one endpoint is required")
        self.metadata: Metadata = authorization_metadata(token)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._extra: list[grpc.aio.Channel] = []

    def get(self, endpoint: str) -> grpc.aio.Channel:
        channel = self._channels.get(endpoint)
        if channel is None:
            if self.tls is not None:
                channel = grpc.aio.secure_channel(
                    endpoint, self.tls.channel_credentials(), options=self.tls.channel_options()
                )
            else:
                channel = grpc.aio.insecure_channel(endpoint)
            if len(self._channels) < len(self.endpoints) + DISCOVERED_ENDPOINTS_MAX:
                self._channels[endpoint] = channel
            else:
                self._extra.append(channel)
        return channel

    async def close(self) -> None:
        channels = [*self._channels.values(), *self._extra]
        self._channels.clear()
        self._extra.clear()
        for channel in channels:
            await channel.close()


async def call_with_retry_async(
    send: Callable[[str, float], Awaitable[Any]],
    endpoints: Sequence[str],
    policy: RetryPolicy,
    first: Optional[str] = None,
    on_success: Optional[Callable[[str], None]] = None,
    deadline: Optional[float] = None,
) -> Any:
    """``call_with_retry`` for coroutines: the same loop (``retry.Attempts``)."""
    attempts = Attempts(endpoints, policy, first=first, deadline=deadline)
    while True:
        try:
            result = await send(attempts.target, attempts.timeout())
        except grpc.RpcError as rpc_error:
            pause = attempts.failed(rpc_error)
            if pause > 0:
                await asyncio.sleep(pause)
            continue
        if on_success is not None:
            on_success(attempts.target)
        return result


@dataclasses.dataclass(eq=False)
class _Call:
    request: wallet_pb2.TransferRequest
    deadline: float
    result: "asyncio.Future[Outcome]"


@dataclasses.dataclass
class _Lane:
    in_flight: int = 0
    queue: Deque[_Call] = dataclasses.field(default_factory=collections.deque)


class AsyncBatcher:
    """The per-node lanes of one asyncio client (see the module docstring)."""

    def __init__(
        self,
        send_batch: Callable[[str, wallet_pb2.TransferBatchRequest, float], Awaitable[wallet_pb2.TransferBatchResponse]],
        on_success: Callable[[str, Sequence[wallet_pb2.TransferRequest]], None],
        in_flight_max: int,
        call_timeout: float,
    ):
        if in_flight_max < 1:
            raise ValueError("in_flight_max must be at least 1 (0 means: no batcher)")
        self._send_batch = send_batch
        self._on_success = on_success
        self._in_flight_max = in_flight_max
        self._call_timeout = call_timeout
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set["asyncio.Task[None]"] = set()
        self._unsupported: set[str] = set()
        self.stats = BatchStats()

    def supports(self, node: str) -> bool:
        return node not in self._unsupported

    async def submit(self, node: str, request: wallet_pb2.TransferRequest, deadline: float) -> Outcome:
        call = _Call(request, deadline, asyncio.get_running_loop().create_future())
        lane = self._lanes.setdefault(node, _Lane())
        if lane.in_flight < self._in_flight_max:
            lane.in_flight += 1
            self._start(node, [call, *self._take(lane, TRANSFER_BATCH_MAX - 1)])
        else:
            lane.queue.append(call)
        try:
            return await asyncio.wait_for(asyncio.shield(call.result), max(deadline - time.monotonic(), 0.0))
        except asyncio.TimeoutError:
            if call in lane.queue:
                lane.queue.remove(call)
                raise deadline_exceeded("the call's deadline passed while it waited for a batch") from None
            raise deadline_exceeded("the call's deadline passed while its batch was in flight") from None
        except asyncio.CancelledError:
            if call in lane.queue:
                lane.queue.remove(call)
            raise

    @staticmethod
    def _take(lane: _Lane, limit: int) -> list[_Call]:
        taken: list[_Call] = []
        while lane.queue and len(taken) < limit:
            taken.append(lane.queue.popleft())
        return taken

    def _start(self, node: str, batch: list[_Call]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(node, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, node: str, batch: list[_Call]) -> None:
        outcomes: list[Outcome] = [FALLBACK for _ in batch]
        try:
            outcomes = await self._send(node, batch)
        finally:  # whatever happens, the slot passes on and every caller gets an answer
            lane = self._lanes[node]
            following = self._take(lane, TRANSFER_BATCH_MAX)
            if following:
                self._start(node, following)
            else:
                lane.in_flight -= 1
                if lane.in_flight == 0 and not lane.queue:
                    del self._lanes[node]
            for call, outcome in zip(batch, outcomes):
                if not call.result.done():
                    call.result.set_result(outcome)

    async def _send(self, node: str, batch: list[_Call]) -> list[Outcome]:
        remaining = max(call.deadline for call in batch) - time.monotonic()
        timeout = max(min(self._call_timeout, remaining), _BATCH_TIMEOUT_MIN)
        self.stats = dataclasses.replace(
            self.stats,
            batches=self.stats.batches + 1,
            batched_transfers=self.stats.batched_transfers + len(batch),
            largest_batch=max(self.stats.largest_batch, len(batch)),
        )
        requests = [call.request for call in batch]
        try:
            response = await self._send_batch(node, wallet_pb2.TransferBatchRequest(transfers=requests), timeout)
        except Exception as error:  # any failure: each call retries on its own
            self.stats = dataclasses.replace(self.stats, failed_batches=self.stats.failed_batches + 1)
            if isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNIMPLEMENTED:
                self._unsupported.add(node)
            return [FALLBACK for _ in batch]
        results = list(response.results)
        if len(results) != len(batch):
            results = []
        outcomes = [
            result_outcome(call.request, results[i] if i < len(results) else None) for i, call in enumerate(batch)
        ]
        succeeded = [
            call.request for call, outcome in zip(batch, outcomes) if isinstance(outcome, wallet_pb2.TransferResponse)
        ]
        if succeeded:
            self._on_success(node, succeeded)
        return outcomes

    async def close(self) -> None:
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)


class AsyncWalletClient:
    """``WalletClient`` for asyncio: the same options, calls (as coroutines), errors and
    batching. Use it from one event loop."""

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
        self._channels = _AioChannels(endpoints, tls, token)
        self.policy = policy
        self._leaders: dict[str, str] = {}
        self._transfers = 0
        self._unary_transfers = 0
        self._batcher: Optional[AsyncBatcher] = None
        if batch_in_flight_max > 0:
            self._batcher = AsyncBatcher(
                self._send_batch, self._remember_batch, batch_in_flight_max, policy.call_timeout
            )

    async def __aenter__(self) -> "AsyncWalletClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()
        await self._channels.close()

    @property
    def endpoints(self) -> list[str]:
        return list(self._channels.endpoints)

    def leader(self, routing_key: str) -> Optional[str]:
        return self._leaders.get(routing_key)

    def stats(self) -> BatchStats:
        batched = self._batcher.stats if self._batcher is not None else BatchStats()
        return dataclasses.replace(batched, transfers=self._transfers, unary_transfers=self._unary_transfers)

    def _remember(self, routing_key: str, endpoint: str) -> None:
        if len(self._leaders) >= LEADER_CACHE_MAX:
            self._leaders.clear()
        self._leaders[routing_key] = endpoint

    def _remember_batch(self, endpoint: str, requests: Sequence[wallet_pb2.TransferRequest]) -> None:
        for request in requests:
            self._remember(request.from_account, endpoint)

    def _stub(self, endpoint: str) -> wallet_pb2_grpc.WalletServiceStub:
        return wallet_pb2_grpc.WalletServiceStub(self._channels.get(endpoint))  # type: ignore[no-untyped-call]

    async def _send_batch(
        self, endpoint: str, request: wallet_pb2.TransferBatchRequest, timeout: float
    ) -> wallet_pb2.TransferBatchResponse:
        call = self._stub(endpoint).TransferBatch(request, timeout=timeout, metadata=self._channels.metadata)
        return cast(wallet_pb2.TransferBatchResponse, await call)

    async def _call(self, method: str, request: Any, routing_key: str = "", deadline: Optional[float] = None) -> Any:
        async def send(endpoint: str, timeout: float) -> Any:
            stub_method = getattr(self._stub(endpoint), method)
            return await stub_method(request, timeout=timeout, metadata=self._channels.metadata)

        remember: Optional[Callable[[str], None]] = None
        if routing_key:
            remember = lambda endpoint: self._remember(routing_key, endpoint)  # noqa: E731
        return await call_with_retry_async(
            send,
            self._channels.endpoints,
            self.policy,
            first=self.leader(routing_key) if routing_key else None,
            on_success=remember,
            deadline=deadline,
        )

    async def open_account(
        self, account_id: str, currency: str, *, allow_negative_balance: bool = False
    ) -> wallet_pb2.Account:
        """See ``WalletClient.open_account``."""
        request = wallet_pb2.OpenAccountRequest(
            account_id=account_id, currency=currency, allow_negative_balance=allow_negative_balance
        )
        response = cast(wallet_pb2.OpenAccountResponse, await self._call("OpenAccount", request, account_id))
        return response.account

    async def transfer(
        self,
        *,
        transaction_id: str,
        from_account: str,
        to_account: str,
        amount: str,
        currency: str,
    ) -> wallet_pb2.TransferResponse:
        """See ``WalletClient.transfer``: concurrent calls (``asyncio.gather``, tasks) share
        ``TransferBatch`` calls, each with its own outcome, error and deadline."""
        request = wallet_pb2.TransferRequest(
            transaction_id=transaction_id,
            from_account=from_account,
            to_account=to_account,
            amount=amount,
            currency=currency,
        )
        deadline = time.monotonic() + self.policy.total_deadline
        self._transfers += 1
        node = self.leader(from_account) or self._channels.endpoints[0]
        if self._batcher is not None and self._batcher.supports(node):
            outcome = await self._batcher.submit(node, request, deadline)
            if isinstance(outcome, wallet_pb2.TransferResponse):
                return outcome
            if outcome is not FALLBACK:
                raise cast(Exception, outcome)
        self._unary_transfers += 1
        response = await self._call("Transfer", request, from_account, deadline=deadline)
        return cast(wallet_pb2.TransferResponse, response)

    async def get_account(self, account_id: str) -> wallet_pb2.GetAccountResponse:
        """See ``WalletClient.get_account``."""
        request = wallet_pb2.GetAccountRequest(account_id=account_id)
        return cast(wallet_pb2.GetAccountResponse, await self._call("GetAccount", request))

    async def get_transfer(self, transaction_id: str) -> wallet_pb2.Transfer:
        """See ``WalletClient.get_transfer``."""
        request = wallet_pb2.GetTransferRequest(transaction_id=transaction_id)
        response = cast(wallet_pb2.GetTransferResponse, await self._call("GetTransfer", request))
        return response.transfer


class AsyncBalanceWatch(Protocol):
    """What ``AsyncQueryClient.watch_balances`` returns: an async iterator of updates that is
    also a ``grpc.aio.Call`` (``cancel()`` ends the watch)."""

    def __aiter__(self) -> AsyncIterator[query_pb2.BalanceUpdate]: ...

    def cancel(self) -> bool: ...


class AsyncQueryClient:
    """``QueryClient`` for asyncio."""

    def __init__(
        self,
        endpoints: Sequence[str],
        policy: RetryPolicy = RetryPolicy(),
        *,
        tls: Optional[TlsConfig] = None,
        token: Optional[str] = None,
    ):
        self._channels = _AioChannels(endpoints, tls, token)
        self.policy = policy

    async def __aenter__(self) -> "AsyncQueryClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channels.close()

    def _stub(self, endpoint: str) -> query_pb2_grpc.QueryServiceStub:
        return query_pb2_grpc.QueryServiceStub(self._channels.get(endpoint))  # type: ignore[no-untyped-call]

    async def get_balance(self, account_id: str, consistency_token: str = "") -> query_pb2.GetBalanceResponse:
        """See ``QueryClient.get_balance``."""
        request = query_pb2.GetBalanceRequest(account_id=account_id, consistency_token=consistency_token)

        async def send(endpoint: str, timeout: float) -> Any:
            return await self._stub(endpoint).GetBalance(request, timeout=timeout, metadata=self._channels.metadata)

        return cast(query_pb2.GetBalanceResponse, await call_with_retry_async(send, self._channels.endpoints, self.policy))

    def watch_balances(
        self,
        account_ids: Iterable[str],
        resume_after_sequence: Optional[Mapping[str, int]] = None,
        timeout: Optional[float] = None,
    ) -> AsyncBalanceWatch:
        """See ``QueryClient.watch_balances``; iterate with ``async for``."""
        request = query_pb2.WatchBalancesRequest(
            account_ids=list(account_ids), resume_after_sequence=dict(resume_after_sequence or {})
        )
        stream = self._stub(self._channels.endpoints[0]).WatchBalances(
            request, timeout=timeout, metadata=self._channels.metadata
        )
        return cast(AsyncBalanceWatch, stream)
