"""The asyncio clients (``grpc.aio``): ``AsyncWalletClient`` and ``AsyncQueryClient``, the
twins of ``WalletClient`` and ``QueryClient`` with the same routing, retry loop
(``retry.Attempts``), errors, TLS and tokens, and the same transparent pipelining of
``transfer()`` (see ``wallet_ledger.pipeline`` for the algorithm).

Pipelining in asyncio: each open ``SubmitTransfers`` stream is a ``grpc.aio`` stream-stream call
whose requests come from an async iterator over the pipe's bounded ``asyncio.Queue``, and whose
results a task of the client's hands out as they come; each caller awaits its own result with
its own timeout (see ``wallet_ledger.pipeline`` for the rules and the fallbacks). ``close()``
ends the streams and awaits their tasks.

    async with AsyncWalletClient(["127.0.0.1:50051"]) as wallet:
        done = await wallet.transfer(transaction_id=new_transaction_id(), from_account="a",
                                     to_account="b", amount="1.00", currency="USD")
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Optional, Sequence, cast

import grpc
import grpc.aio

from ._proto.wallet.v1 import cluster_pb2, cluster_pb2_grpc, query_pb2, query_pb2_grpc, wallet_pb2, wallet_pb2_grpc
from .auth import TlsConfig, call_metadata, normalize_endpoint
from .client import (
    DISCOVERED_ENDPOINTS_MAX,
    LEADER_CACHE_MAX,
    AccountLike,
    AccountOutcome,
    LegLike,
    TransferLike,
    TransferOutcome,
    authorize_request,
    balance_at_request,
    batch_outcomes,
    item_error,
    new_open_request,
    new_transaction_id,
    new_transfer_legs_request,
    new_transfer_request,
    open_request,
    transfer_request,
)
from .errors import WalletError, classify
from .pipeline import FALLBACK, PIPE_QUEUE_MAX, AsyncPipe, Counters, Outcome, PipelineStats, final_answer
from .retry import Attempts, RetryPolicy
from .watch import AsyncBalanceWatch, AsyncTransferWatch

Metadata = tuple[tuple[str, str], ...]


class _AioChannels:
    """One ``grpc.aio`` channel per node, made on first use (inside the event loop), and the
    metadata of every call: the token, and for a write client (``write``) given more than one
    distinct endpoint, the no-forward metadata (it follows leader hints itself; given one
    endpoint, the nodes forward)."""

    def __init__(
        self, endpoints: Sequence[str], tls: Optional[TlsConfig], token: Optional[str], write: bool = False
    ):
        self.tls = tls
        self.endpoints = list(dict.fromkeys(normalize_endpoint(e, tls is not None) for e in endpoints))
        if not self.endpoints:
            raise ValueError("at least one endpoint is required")
        self.routes_itself = write and len(self.endpoints) > 1
        self.metadata: Metadata = call_metadata(token, self.routes_itself)
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


class AsyncWalletClient:
    """``WalletClient`` for asyncio: the same options, calls (as coroutines), errors and
    pipelining. Use it from one event loop, and close it (``async with``) to end its streams."""

    def __init__(
        self,
        endpoints: Sequence[str],
        policy: RetryPolicy = RetryPolicy(),
        *,
        tls: Optional[TlsConfig] = None,
        token: Optional[str] = None,
        pipeline_transfers: bool = True,
    ):
        self._channels = _AioChannels(endpoints, tls, token, write=True)
        self.policy = policy
        self.pipeline_transfers = pipeline_transfers
        self._leaders: dict[str, str] = {}
        self._pipes: dict[str, AsyncPipe] = {}
        self._readers: set["asyncio.Task[None]"] = set()
        self._closed = False
        self._counters = Counters()
        #: Requests a pipe holds before they are written (tests lower it).
        self._pipe_queue_max = PIPE_QUEUE_MAX

    async def __aenter__(self) -> "AsyncWalletClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Ends the streams (callers still waiting go on through the unary path), awaits
        their tasks, and closes the channels."""
        self._closed = True
        pipes = list(self._pipes.values())
        self._pipes.clear()
        for pipe in pipes:
            pipe.close()
        readers = list(self._readers)
        if readers:
            await asyncio.gather(*readers, return_exceptions=True)
        await self._channels.close()

    @property
    def endpoints(self) -> list[str]:
        return list(self._channels.endpoints)

    def leader(self, routing_key: str) -> Optional[str]:
        return self._leaders.get(routing_key)

    def pipeline_stats(self) -> PipelineStats:
        """See ``WalletClient.pipeline_stats``."""
        return self._counters.stats()

    def _remember(self, routing_key: str, endpoint: str) -> None:
        if len(self._leaders) >= LEADER_CACHE_MAX:
            self._leaders.clear()
        self._leaders[routing_key] = endpoint

    def _stub(self, endpoint: str) -> wallet_pb2_grpc.WalletServiceStub:
        return wallet_pb2_grpc.WalletServiceStub(self._channels.get(endpoint))  # type: ignore[no-untyped-call]

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
        self,
        account_id: str,
        currency: str,
        *,
        allow_negative_balance: bool = False,
        reference: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> wallet_pb2.Account:
        """See ``WalletClient.open_account``."""
        request = new_open_request(account_id, currency, allow_negative_balance, reference, metadata)
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
        reference: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> wallet_pb2.TransferResponse:
        """See ``WalletClient.transfer``: concurrent calls (``asyncio.gather``, tasks) share
        one ``SubmitTransfers`` stream per node, each with its own outcome, error and
        deadline."""
        request = new_transfer_request(
            transaction_id, from_account, to_account, amount, currency, reference, metadata
        )
        deadline = time.monotonic() + self.policy.total_deadline
        if self.pipeline_transfers:
            answer = final_answer(await self._transfer_pipelined(request, deadline), deadline)
            if answer is not None:
                return answer
        self._counters.went_unary()
        response = await self._call("Transfer", request, from_account, deadline=deadline)
        return cast(wallet_pb2.TransferResponse, response)

    async def _transfer_pipelined(self, request: wallet_pb2.TransferRequest, deadline: float) -> Outcome:
        node = self.leader(request.from_account) or self._channels.endpoints[0]
        pipe = self._pipe(node)
        if pipe is None:
            return FALLBACK
        waiter = pipe.send(request)
        if waiter is None:
            return FALLBACK
        self._counters.transfer_sent()
        return await pipe.wait(waiter, min(self.policy.call_timeout, deadline - time.monotonic()))

    def _pipe(self, node: str) -> Optional[AsyncPipe]:
        """The open stream to ``node``, or a new one with its reader task."""
        if self._closed:
            return None
        pipe = self._pipes.get(node)
        if pipe is not None and not pipe.closed:
            return pipe
        pipe = AsyncPipe(node, self._pipe_queue_max)
        self._pipes[node] = pipe
        self._counters.stream_opened()
        task = asyncio.get_running_loop().create_task(self._read_pipe(pipe))
        pipe.task = task
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)
        return pipe

    async def _read_pipe(self, pipe: AsyncPipe) -> None:
        """As ``client._read_pipe``: hands out the stream's results until it ends, then
        closes the pipe (its waiters go on alone) and forgets it."""
        try:
            call = self._stub(pipe.node).SubmitTransfers(pipe.requests(), metadata=self._channels.metadata)
            pipe.opened(call)
            async for result in call:
                succeeded = pipe.resolve(result)
                if succeeded is not None:
                    self._remember(succeeded.from_account, pipe.node)
        except (grpc.RpcError, asyncio.CancelledError):
            pass  # refused, broken, or cancelled by close()
        finally:
            pipe.close()
            if self._pipes.get(pipe.node) is pipe:
                del self._pipes[pipe.node]

    async def get_account(self, account_id: str) -> wallet_pb2.GetAccountResponse:
        """See ``WalletClient.get_account``."""
        request = wallet_pb2.GetAccountRequest(account_id=account_id)
        return cast(wallet_pb2.GetAccountResponse, await self._call("GetAccount", request))

    async def transfer_legs(
        self,
        legs: Sequence[LegLike],
        *,
        transaction_id: Optional[str] = None,
        reference: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> wallet_pb2.TransferResponse:
        """See ``WalletClient.transfer_legs``."""
        request = new_transfer_legs_request(
            new_transaction_id() if transaction_id is None else transaction_id, legs, reference, metadata
        )
        key = request.legs[0].from_account if request.legs else ""
        try:
            return cast(wallet_pb2.TransferResponse, await self._call("TransferLegs", request, key))
        except WalletError as error:
            error.transaction_id = request.transaction_id
            raise

    async def authorize_transfer(
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
        """See ``WalletClient.authorize_transfer``."""
        request = authorize_request(
            transaction_id, from_account, to_account, amount, currency, timeout, reference, metadata
        )
        return cast(wallet_pb2.HoldResponse, await self._call("AuthorizeTransfer", request, from_account))

    async def capture_transfer(
        self, *, transaction_id: str, from_account: str, amount: Optional[str] = None
    ) -> wallet_pb2.HoldResponse:
        """See ``WalletClient.capture_transfer``."""
        request = wallet_pb2.CaptureTransferRequest(
            transaction_id=transaction_id, from_account=from_account, amount=amount or ""
        )
        return cast(wallet_pb2.HoldResponse, await self._call("CaptureTransfer", request, from_account))

    async def void_transfer(self, *, transaction_id: str, from_account: str) -> wallet_pb2.HoldResponse:
        """See ``WalletClient.void_transfer``."""
        request = wallet_pb2.VoidTransferRequest(transaction_id=transaction_id, from_account=from_account)
        return cast(wallet_pb2.HoldResponse, await self._call("VoidTransfer", request, from_account))

    async def freeze_account(self, account_id: str) -> wallet_pb2.Account:
        """See ``WalletClient.freeze_account``."""
        request = wallet_pb2.FreezeAccountRequest(account_id=account_id)
        response = cast(wallet_pb2.FreezeAccountResponse, await self._call("FreezeAccount", request, account_id))
        return response.account

    async def unfreeze_account(self, account_id: str) -> wallet_pb2.Account:
        """See ``WalletClient.unfreeze_account``."""
        request = wallet_pb2.UnfreezeAccountRequest(account_id=account_id)
        response = cast(wallet_pb2.UnfreezeAccountResponse, await self._call("UnfreezeAccount", request, account_id))
        return response.account

    async def close_account(self, account_id: str) -> wallet_pb2.Account:
        """See ``WalletClient.close_account``."""
        request = wallet_pb2.CloseAccountRequest(account_id=account_id)
        response = cast(wallet_pb2.CloseAccountResponse, await self._call("CloseAccount", request, account_id))
        return response.account

    async def set_overdraft_limit(self, account_id: str, overdraft_limit: str, currency: str) -> wallet_pb2.Account:
        """See ``WalletClient.set_overdraft_limit``."""
        request = wallet_pb2.SetOverdraftLimitRequest(
            account_id=account_id, overdraft_limit=overdraft_limit, currency=currency
        )
        response = cast(
            wallet_pb2.SetOverdraftLimitResponse, await self._call("SetOverdraftLimit", request, account_id)
        )
        return response.account

    async def get_transfer(self, transaction_id: str) -> wallet_pb2.Transfer:
        """See ``WalletClient.get_transfer``."""
        request = wallet_pb2.GetTransferRequest(transaction_id=transaction_id)
        response = cast(wallet_pb2.GetTransferResponse, await self._call("GetTransfer", request))
        return response.transfer


    async def transfer_batch(self, transfers: Sequence[TransferLike]) -> list[TransferOutcome]:
        """See ``WalletClient.transfer_batch``; the items retried alone go concurrently."""
        requests = [transfer_request(t) for t in transfers]
        key = requests[0].from_account if requests else ""
        response = await self._call("TransferBatch", wallet_pb2.TransferBatchRequest(transfers=requests), key)
        outcomes = batch_outcomes(requests, cast(wallet_pb2.TransferBatchResponse, response))

        async def alone(request: wallet_pb2.TransferRequest) -> TransferOutcome:
            try:
                return cast(wallet_pb2.TransferResponse, await self._call("Transfer", request, request.from_account))
            except WalletError as error:
                return error

        retried = await asyncio.gather(*(alone(r) for r, o in zip(requests, outcomes) if o is None))
        it = iter(retried)
        return [o if o is not None else next(it) for o in outcomes]

    async def open_accounts(self, accounts: Sequence[AccountLike]) -> list[AccountOutcome]:
        """See ``WalletClient.open_accounts``."""
        requests = [open_request(a) for a in accounts]
        outcomes: list[Optional[AccountOutcome]] = [None] * len(requests)
        pending: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            pending.setdefault(request.account_id, []).append(i)
        endpoint = (self.leader(requests[0].account_id) if requests else None) or self._channels.endpoints[0]
        try:
            call = self._stub(endpoint).OpenAccounts(
                iter(requests), timeout=self.policy.total_deadline, metadata=self._channels.metadata
            )
            async for result in call:
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

        async def alone(request: wallet_pb2.OpenAccountRequest) -> AccountOutcome:
            try:
                response = await self._call("OpenAccount", request, request.account_id)
                return cast(wallet_pb2.OpenAccountResponse, response).account
            except WalletError as error:
                return error

        retried = iter(await asyncio.gather(*(alone(r) for r, o in zip(requests, outcomes) if o is None)))
        return [o if o is not None else next(retried) for o in outcomes]

    def submit_transfers(
        self,
        transfers: Any,
        *,
        endpoint: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> AsyncIterator[wallet_pb2.TransferResult]:
        """See ``WalletClient.submit_transfers``: ``transfers`` is an iterable or an async
        iterable of transfers; iterate the results with ``async for`` (a failure of the whole
        stream raises a typed error)."""
        target = endpoint or self._channels.endpoints[0]

        async def requests() -> AsyncIterator[wallet_pb2.TransferRequest]:
            if hasattr(transfers, "__aiter__"):
                async for t in transfers:
                    yield transfer_request(t)
            else:
                for t in transfers:
                    yield transfer_request(t)

        call = self._stub(target).SubmitTransfers(requests(), timeout=timeout, metadata=self._channels.metadata)

        async def results() -> AsyncIterator[wallet_pb2.TransferResult]:
            try:
                async for result in call:
                    yield result
            except grpc.RpcError as error:
                raise classify(error) from error
            finally:
                call.cancel()

        return results()

    async def get_cluster_status(
        self, *, endpoint: Optional[str] = None, include_state_digest: bool = False
    ) -> cluster_pb2.GetClusterStatusResponse:
        """See ``WalletClient.get_cluster_status``."""
        return await _cluster_status(self._channels, self.policy, endpoint, include_state_digest)


async def _cluster_status(
    channels: _AioChannels, policy: RetryPolicy, endpoint: Optional[str], digest: bool
) -> cluster_pb2.GetClusterStatusResponse:
    request = cluster_pb2.GetClusterStatusRequest(include_state_digest=digest)

    async def send(target: str, timeout: float) -> Any:
        stub = cluster_pb2_grpc.ClusterServiceStub(channels.get(target))  # type: ignore[no-untyped-call]
        return await stub.GetClusterStatus(request, timeout=timeout, metadata=channels.metadata)

    targets = [endpoint] if endpoint else channels.endpoints
    return cast(cluster_pb2.GetClusterStatusResponse, await call_with_retry_async(send, targets, policy))


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

    async def _unary(self, method: str, request: Any) -> Any:
        async def send(endpoint: str, timeout: float) -> Any:
            stub_method = getattr(self._stub(endpoint), method)
            return await stub_method(request, timeout=timeout, metadata=self._channels.metadata)

        return await call_with_retry_async(send, self._channels.endpoints, self.policy)

    async def list_transfers(
        self, account_id: str, *, page_token: str = "", page_size: int = 0
    ) -> query_pb2.ListTransfersResponse:
        """See ``QueryClient.list_transfers``."""
        request = query_pb2.ListTransfersRequest(account_id=account_id, page_token=page_token, page_size=page_size)
        return cast(query_pb2.ListTransfersResponse, await self._unary("ListTransfers", request))

    async def iter_transfers(self, account_id: str, *, page_size: int = 0) -> AsyncIterator[query_pb2.HistoryEntry]:
        """See ``QueryClient.iter_transfers``; iterate with ``async for``."""
        page_token = ""
        while True:
            page = await self.list_transfers(account_id, page_token=page_token, page_size=page_size)
            for entry in page.entries:
                yield entry
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    async def get_balance_at(
        self, account_id: str, *, position: Optional[str] = None, timestamp_ms: Optional[int] = None
    ) -> query_pb2.Balance:
        """See ``QueryClient.get_balance_at``."""
        request = balance_at_request(account_id, position, timestamp_ms)
        return cast(query_pb2.GetBalanceAtResponse, await self._unary("GetBalanceAt", request)).balance

    async def get_cluster_status(
        self, *, endpoint: Optional[str] = None, include_state_digest: bool = False
    ) -> cluster_pb2.GetClusterStatusResponse:
        """See ``QueryClient.get_cluster_status``."""
        return await _cluster_status(self._channels, self.policy, endpoint, include_state_digest)

    def _open_stream(self, method: str) -> Callable[[str, Any, Optional[float]], Any]:
        def open_stream(endpoint: str, request: Any, timeout: Optional[float]) -> Any:
            return getattr(self._stub(endpoint), method)(request, timeout=timeout, metadata=self._channels.metadata)

        return open_stream

    def watch_balances(
        self,
        account_ids: Iterable[str],
        resume_after_sequence: Optional[Mapping[str, int]] = None,
        timeout: Optional[float] = None,
        *,
        max_resumes: Optional[int] = None,
    ) -> AsyncBalanceWatch:
        """See ``QueryClient.watch_balances`` (it resumes by itself); iterate with
        ``async for``."""
        return AsyncBalanceWatch(
            self._open_stream("WatchBalances"),
            self._channels.endpoints,
            list(account_ids),
            resume_after_sequence,
            timeout=timeout,
            max_resumes=max_resumes,
        )

    def watch_transfer(
        self, transaction_id: str, *, timeout: Optional[float] = None, max_resumes: Optional[int] = None
    ) -> AsyncTransferWatch:
        """See ``QueryClient.watch_transfer``; iterate with ``async for``."""
        return AsyncTransferWatch(
            self._open_stream("WatchTransfer"),
            self._channels.endpoints,
            transaction_id,
            timeout=timeout,
            max_resumes=max_resumes,
        )
