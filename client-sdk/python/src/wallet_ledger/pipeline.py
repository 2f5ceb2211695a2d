"""Transparent pipelining of ``WalletClient.transfer()``: concurrent calls bound for the same
node share one long-lived ``SubmitTransfers`` stream, so they cost the node one stream instead
of one call each, and reach its store together (one raft entry carries many). The same
algorithm as the Rust SDK's (``client-sdk/src/pipeline.rs``):

* A call picks the node it would be sent to: the cached leader of its routing key
  (``from_account``), else the first endpoint; it writes its request down that node's stream
  (opened on first use) and waits for the result naming its ``transaction_id``. Results come
  back as each transfer becomes final, in any order; each goes to the first caller waiting
  for its id (a FIFO per id: the same id may be in flight twice). Nothing waits to be
  gathered (no timer, no linger) and no call waits for another's answer.
* "success" answers the caller and records the node as the leader of its routing key;
  "rejected" raises the ``Rejected`` error the unary call would raise (with the result's
  ``field``, whatever the code).
* The call goes on alone through the unary ``Transfer`` retry loop, with the same request
  (same ``transaction_id``) and within what is left of its own deadline, when: the result is
  "unavailable" or malformed; no result came within the call timeout (its waiter is then
  forgotten, and a late result ignored); the pipe's queue (``PIPE_QUEUE_MAX`` requests not yet
  written to the stream) is full; or the stream ended or could not be opened (transport
  error, UNIMPLEMENTED from an older server, ...): then every caller still waiting on it goes
  on alone, the pipe is forgotten so that the next call opens a new stream, and a closed
  pipe never takes a new waiter.

``Pipe`` is one node's stream as the threads of ``WalletClient`` see it (a bounded
``queue.Queue`` feeds the request iterator gRPC writes from; the client's reader thread hands
each result out); ``AsyncPipe`` is the same for ``AsyncWalletClient`` (an ``asyncio.Queue``
and futures).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import queue
import threading
import time
from typing import Any, AsyncIterator, Deque, Dict, Iterator, Optional, Union

import grpc
import grpc.aio

from ._proto.wallet.v1 import wallet_pb2
from .errors import ERROR_DOMAIN, METADATA_REPLAYED, RETRYABLE_CODES, ErrorDetails, Rejected, WalletError, deadline_exceeded

#: Requests a pipe holds before they are written to its stream. Beyond that (the node reads
#: slowly, or a client has this many calls waiting) a call goes its own way as a unary call.
PIPE_QUEUE_MAX = 1024

_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class _Fallback:
    """The outcome "send me again through the unary retry loop"."""

    def __repr__(self) -> str:
        return "FALLBACK"


FALLBACK = _Fallback()

Outcome = Union[wallet_pb2.TransferResponse, WalletError, _Fallback]


def final_answer(outcome: Outcome, deadline: float) -> Optional[wallet_pb2.TransferResponse]:
    """Ends a pipelined call: its response, or raises its error (or, when the call's
    ``deadline`` passed on the stream, DEADLINE_EXCEEDED); ``None`` to go on unary."""
    if isinstance(outcome, wallet_pb2.TransferResponse):
        return outcome
    if not isinstance(outcome, _Fallback):
        raise outcome
    if time.monotonic() >= deadline:
        raise deadline_exceeded(
            "the call's deadline passed while its transfer was on the stream "
            "(it may still be applied: retry with the same transaction_id)"
        )
    return None


def result_outcome(
    request: wallet_pb2.TransferRequest, result: Optional[wallet_pb2.TransferResult]
) -> Outcome:
    """What one ``TransferResult`` (of ``SubmitTransfers`` or ``TransferBatch``) means for the
    call that sent ``request``: the unary call's answer, or ``FALLBACK`` (retry the id)."""
    if result is None or result.transaction_id not in ("", request.transaction_id):
        return FALLBACK
    if result.status == "success":
        return wallet_pb2.TransferResponse(
            status=result.status,
            transaction_id=result.transaction_id or request.transaction_id,
            consistency_token=result.consistency_token,
            replayed=result.replayed,
        )
    if result.status == "rejected" and result.HasField("error"):
        error = result.error
        code = _CODES_BY_NUMBER.get(error.code)
        if code is None or code == grpc.StatusCode.OK or code in RETRYABLE_CODES:
            return FALLBACK  # not a definite answer after all
        details = ErrorDetails(
            code=code,
            message=error.message,
            reason=error.reason,
            domain=ERROR_DOMAIN,
            metadata={METADATA_REPLAYED: "true"} if result.replayed else {},
            # The field as the node gives it, whatever the code (the unary status carries the
            # same one as a BadRequest violation for INVALID_ARGUMENT and NOT_FOUND).
            field_violations=[(error.field, error.message)] if error.field else [],
        )
        return Rejected(details, error.reason or code.name)
    return FALLBACK  # "unavailable", or something this SDK does not know


@dataclasses.dataclass(frozen=True)
class PipelineStats:
    """How much one client pipelined (``WalletClient.pipeline_stats()``)."""

    #: ``SubmitTransfers`` streams opened by ``transfer()``.
    streams: int = 0
    #: Transfers sent down them.
    transfers: int = 0
    #: ``transfer()`` calls that went through the unary ``Transfer`` path: pipelining off, or
    #: a fallback (see the module docstring).
    unary_transfers: int = 0


class Counters:
    """The counters behind ``PipelineStats``, safe to bump from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = [0, 0, 0]

    def _bump(self, index: int) -> None:
        with self._lock:
            self._values[index] += 1

    def stream_opened(self) -> None:
        self._bump(0)

    def transfer_sent(self) -> None:
        self._bump(1)

    def went_unary(self) -> None:
        self._bump(2)

    def stats(self) -> PipelineStats:
        with self._lock:
            streams, transfers, unary = self._values
        return PipelineStats(streams=streams, transfers=transfers, unary_transfers=unary)


def _conflicts(waiting: Optional[Deque[Any]], request: wallet_pb2.TransferRequest) -> bool:
    """Whether a different transfer under ``request``'s id waits on the stream: results name
    the id alone, so the two answers could not be told apart (the second goes unary)."""
    return waiting is not None and len(waiting) > 0 and waiting[0].request != request


@dataclasses.dataclass(eq=False)
class Waiter:
    """A thread waiting for a result."""

    request: wallet_pb2.TransferRequest
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    outcome: Outcome = FALLBACK


class Pipe:
    """One node's ``SubmitTransfers`` stream, as the threads calling ``transfer()`` see it."""

    def __init__(self, node: str, queue_max: int = PIPE_QUEUE_MAX):
        if queue_max < 1:
            raise ValueError("queue_max must be at least 1")
        self.node = node
        self._lock = threading.Lock()
        # Requests not yet written; None (after close) ends the request iterator.
        self._requests: "queue.Queue[Optional[wallet_pb2.TransferRequest]]" = queue.Queue(maxsize=queue_max + 1)
        self._queue_max = queue_max
        self._waiting: Dict[str, Deque[Waiter]] = {}
        self._closed = False
        #: The gRPC call, once opened (``close()`` cancels it).
        self._call: Optional[grpc.Call] = None

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def waiting(self) -> int:
        """How many callers wait for a result."""
        with self._lock:
            return sum(len(waiters) for waiters in self._waiting.values())

    def send(self, request: wallet_pb2.TransferRequest) -> Optional[Waiter]:
        """Queues ``request`` for the stream; the waiter to ``wait`` on, or None if the pipe
        is closed or full, or a different transfer under the same id waits on it (the caller
        goes its own way)."""
        waiter = Waiter(request)
        with self._lock:
            if self._closed or self._requests.qsize() >= self._queue_max:
                return None
            if _conflicts(self._waiting.get(request.transaction_id), request):
                return None
            # Under the lock, so close() finds every request it must drop, and the result
            # cannot come before its waiter is registered.
            self._requests.put_nowait(request)
            self._waiting.setdefault(request.transaction_id, collections.deque()).append(waiter)
        return waiter

    def wait(self, waiter: Waiter, timeout: float) -> Outcome:
        """The waiter's outcome, or ``FALLBACK`` if none came within ``timeout`` seconds (it
        is then forgotten: a late result is ignored)."""
        if not waiter.done.wait(max(timeout, 0.0)):
            if self.forget(waiter):
                return FALLBACK
            waiter.done.wait()  # resolved or orphaned while timing out: set at once
        return waiter.outcome

    def forget(self, waiter: Waiter) -> bool:
        """Stops ``waiter`` waiting; False if a result (or the stream's end) took it already."""
        with self._lock:
            waiters = self._waiting.get(waiter.request.transaction_id)
            if waiters is None or waiter not in waiters:
                return False
            waiters.remove(waiter)
            if not waiters:
                del self._waiting[waiter.request.transaction_id]
            return True

    def resolve(self, result: wallet_pb2.TransferResult) -> Optional[wallet_pb2.TransferRequest]:
        """Hands ``result`` to the first caller waiting for its id; that caller's request if
        it is a success (its routing key is then known to be led by this node)."""
        with self._lock:
            waiters = self._waiting.get(result.transaction_id)
            if not waiters:
                return None  # nobody waits (any more): ignored
            waiter = waiters.popleft()
            if not waiters:
                del self._waiting[result.transaction_id]
        waiter.outcome = result_outcome(waiter.request, result)
        waiter.done.set()
        return waiter.request if isinstance(waiter.outcome, wallet_pb2.TransferResponse) else None

    def requests(self) -> Iterator[wallet_pb2.TransferRequest]:
        """What gRPC writes to the stream: the queued requests until ``close()``."""
        while True:
            request = self._requests.get()
            if request is None:
                return
            yield request

    def opened(self, call: grpc.Call) -> None:
        """Keeps the stream's call, to cancel it on ``close()``."""
        with self._lock:
            self._call = call
            closed = self._closed
        if closed:
            call.cancel()

    def close(self) -> None:
        """The stream ended (or the client closes): every caller still waiting goes on alone,
        no new one waits here, the request iterator ends and the call is cancelled."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            orphans = [waiter for waiters in self._waiting.values() for waiter in waiters]
            self._waiting.clear()
            while True:  # unwritten requests are dropped: their callers go unary
                try:
                    self._requests.get_nowait()
                except queue.Empty:
                    break
            self._requests.put_nowait(None)
            call = self._call
        for waiter in orphans:
            waiter.done.set()  # outcome FALLBACK
        if call is not None:
            call.cancel()


@dataclasses.dataclass(eq=False)
class AsyncWaiter:
    """A task waiting for a result."""

    request: wallet_pb2.TransferRequest
    future: "asyncio.Future[Outcome]"


class AsyncPipe:
    """``Pipe`` for one event loop: the same rules, with an ``asyncio.Queue`` and futures."""

    def __init__(self, node: str, queue_max: int = PIPE_QUEUE_MAX):
        if queue_max < 1:
            raise ValueError("queue_max must be at least 1")
        self.node = node
        self._requests: "asyncio.Queue[Optional[wallet_pb2.TransferRequest]]" = asyncio.Queue(maxsize=queue_max + 1)
        self._queue_max = queue_max
        self._waiting: Dict[str, Deque[AsyncWaiter]] = {}
        self._closed = False
        self._call: Optional["grpc.aio.Call"] = None
        #: The task reading the stream's results (set by the client).
        self.task: Optional["asyncio.Task[None]"] = None

    @property
    def closed(self) -> bool:
        return self._closed

    def waiting(self) -> int:
        """How many callers wait for a result."""
        return sum(len(waiters) for waiters in self._waiting.values())

    def send(self, request: wallet_pb2.TransferRequest) -> Optional[AsyncWaiter]:
        """Queues ``request``; the waiter to ``wait`` on, or None if closed or full, or a
        different transfer under the same id waits here."""
        if self._closed or self._requests.qsize() >= self._queue_max:
            return None
        if _conflicts(self._waiting.get(request.transaction_id), request):
            return None
        self._requests.put_nowait(request)
        waiter = AsyncWaiter(request, asyncio.get_running_loop().create_future())
        self._waiting.setdefault(request.transaction_id, collections.deque()).append(waiter)
        return waiter

    async def wait(self, waiter: AsyncWaiter, timeout: float) -> Outcome:
        """The outcome, or ``FALLBACK`` if none came within ``timeout`` seconds (the waiter is
        then forgotten). A cancelled caller is forgotten too."""
        try:
            await asyncio.wait((waiter.future,), timeout=max(timeout, 0.0))
        finally:
            if not waiter.future.done():
                self.forget(waiter)
                waiter.future.cancel()
        return FALLBACK if waiter.future.cancelled() else waiter.future.result()

    def forget(self, waiter: AsyncWaiter) -> None:
        """Stops ``waiter`` waiting: a result for its id then goes to the next one, if any."""
        waiters = self._waiting.get(waiter.request.transaction_id)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiting[waiter.request.transaction_id]

    def resolve(self, result: wallet_pb2.TransferResult) -> Optional[wallet_pb2.TransferRequest]:
        """Hands ``result`` to the first caller waiting for its id; that caller's request if
        it is a success."""
        waiters = self._waiting.get(result.transaction_id)
        if not waiters:
            return None
        waiter = waiters.popleft()
        if not waiters:
            del self._waiting[result.transaction_id]
        outcome = result_outcome(waiter.request, result)
        if not waiter.future.done():
            waiter.future.set_result(outcome)
        return waiter.request if isinstance(outcome, wallet_pb2.TransferResponse) else None

    async def requests(self) -> AsyncIterator[wallet_pb2.TransferRequest]:
        """What gRPC writes to the stream: the queued requests until ``close()``."""
        while True:
            request = await self._requests.get()
            if request is None:
                return
            yield request

    def opened(self, call: "grpc.aio.Call") -> None:
        """Keeps the stream's call, to cancel it on ``close()``."""
        self._call = call
        if self._closed:
            call.cancel()

    def close(self) -> None:
        """As ``Pipe.close``."""
        if self._closed:
            return
        self._closed = True
        orphans = [waiter for waiters in self._waiting.values() for waiter in waiters]
        self._waiting.clear()
        while not self._requests.empty():
            self._requests.get_nowait()
        self._requests.put_nowait(None)
        for waiter in orphans:
            if not waiter.future.done():
                waiter.future.set_result(FALLBACK)
        if self._call is not None:
            self._call.cancel()
