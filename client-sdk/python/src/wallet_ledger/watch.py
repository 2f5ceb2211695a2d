"""Watches that resume by themselves: ``BalanceWatch`` and ``TransferWatch`` (threads) and
their asyncio twins ``AsyncBalanceWatch`` and ``AsyncTransferWatch``, the Python
counterparts of the Rust, Go and Java SDKs' watches.

A watch opens its stream on the first read node given. When the stream fails in a way the
same watch may get past later or elsewhere (the node is unreachable or restarting, it cut the
watcher off for lagging, ``WATCH_LAGGED``, it serves its maximum number of streams, the stream
simply ended), the watch waits a backoff (full jitter, 100 ms doubling to 2 s, back to 100 ms
once an update arrives) and reopens it on the next read node, asking each account to resume
after the last sequence it delivered (``resume_after_sequence``). Every read node folds the same
log into the same per-account sequences, so nothing is skipped; anything at or below the last
delivered sequence (a replay) is dropped, so nothing is repeated. A transfer watch delivers
only versions newer than the last one it delivered, and ends after the final state.

The watch ends with a typed error (``Rejected``: the request is wrong, e.g.
``ACCOUNT_NOT_FOUND``; ``Indefinite``: the call's ``timeout`` ran out, or ``max_resumes``
resumptions did not get it going again) or, after ``cancel()``, quietly: the iteration stops.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any, AsyncIterator, Callable, Generic, Iterator, Mapping, Optional, Sequence, TypeVar

import grpc
import grpc.aio

from ._proto.wallet.v1 import query_pb2
from .errors import ErrorDetails, Indefinite, WalletError, classify, deadline_exceeded

#: Backoff between resumptions: full jitter under a ceiling that doubles from the minimum
#: after each failed reconnection, back to the minimum once an update arrives (the Rust SDK's).
WATCH_RESUME_BACKOFF_MIN = 0.1
WATCH_RESUME_BACKOFF_MAX = 2.0

#: Codes after which the same watch may succeed later or on another read node.
RESUMABLE_WATCH_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.ABORTED,  # WATCH_LAGGED
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # TOO_MANY_WATCHERS
        grpc.StatusCode.DEADLINE_EXCEEDED,  # one stream's, while the watch's own runs on
        grpc.StatusCode.CANCELLED,  # not by us: the connection went away
        grpc.StatusCode.UNKNOWN,
    }
)

U = TypeVar("U")


def _code(error: grpc.RpcError) -> grpc.StatusCode:
    code: Any = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _ended() -> Indefinite:
    """What a resumption limit reached after a stream that ended without an error raises."""
    return Indefinite(ErrorDetails(code=grpc.StatusCode.UNAVAILABLE, message="the watch stream ended"), "STREAM_ENDED")


class _Policy:
    """What both flavours share: the resumption bookkeeping, the backoff, the deadline."""

    def __init__(self, endpoints: Sequence[str], timeout: Optional[float], max_resumes: Optional[int]):
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        if max_resumes is not None and max_resumes < 0:
            raise ValueError("max_resumes must be >= 0")
        self._endpoints = list(endpoints)
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._max_resumes = max_resumes
        self._attempt = 0
        self._backoff = WATCH_RESUME_BACKOFF_MIN
        #: Reconnections made so far.
        self.resumes = 0

    def _endpoint(self) -> str:
        return self._endpoints[self._attempt % len(self._endpoints)]

    def _remaining(self) -> Optional[float]:
        if self._deadline is None:
            return None
        return max(self._deadline - time.monotonic(), 0.001)

    def _delivered(self) -> None:
        self._backoff = WATCH_RESUME_BACKOFF_MIN

    def _resume_pause(self, error: Optional[grpc.RpcError]) -> float:
        """After a failed stream: the pause before reconnecting, or raises the terminal error."""
        if error is not None and _code(error) not in RESUMABLE_WATCH_CODES:
            raise classify(error)
        if self._deadline is not None and time.monotonic() >= self._deadline:
            if error is not None and _code(error) == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise classify(error)
            raise deadline_exceeded("the watch's timeout ran out")
        if self._max_resumes is not None and self.resumes >= self._max_resumes:
            raise classify(error) if error is not None else _ended()
        self.resumes += 1
        self._attempt += 1
        pause = random.uniform(0, self._backoff) + self._backoff / 2
        self._backoff = min(self._backoff * 2, WATCH_RESUME_BACKOFF_MAX)
        if self._deadline is not None:
            pause = min(pause, max(self._deadline - time.monotonic(), 0))
        return pause


class _BalanceState:
    def __init__(self, account_ids: Sequence[str], resume_after_sequence: Optional[Mapping[str, int]]):
        self.account_ids = list(account_ids)
        self.last: dict[str, int] = dict(resume_after_sequence or {})

    def request(self) -> query_pb2.WatchBalancesRequest:
        return query_pb2.WatchBalancesRequest(account_ids=self.account_ids, resume_after_sequence=self.last)

    def accept(self, update: query_pb2.BalanceUpdate) -> bool:
        if not update.HasField("balance"):
            return False
        account, sequence = update.balance.account_id, update.balance.sequence
        seen = self.last.get(account)
        if seen is not None and sequence <= seen:
            return False  # delivered before a reconnection: never twice
        self.last[account] = sequence
        return True


class _TransferState:
    def __init__(self, transaction_id: str):
        self.transaction_id = transaction_id
        self.last_version = 0
        self.done = False

    def request(self) -> query_pb2.WatchTransferRequest:
        return query_pb2.WatchTransferRequest(transaction_id=self.transaction_id)

    def accept(self, update: query_pb2.TransferUpdate) -> bool:
        if update.version <= self.last_version:
            return False
        self.last_version = update.version
        if update.is_final:
            self.done = True
        return True


# --- threads -------------------------------------------------------------------------------

#: Opens one stream: (endpoint, request, timeout) -> the grpc call (an iterator).
OpenStream = Callable[[str, Any, Optional[float]], Any]


class _ResumingStream(_Policy, Generic[U]):
    def __init__(
        self,
        open_stream: OpenStream,
        endpoints: Sequence[str],
        timeout: Optional[float],
        max_resumes: Optional[int],
    ):
        super().__init__(endpoints, timeout, max_resumes)
        self._open_stream = open_stream
        self._lock = threading.Lock()
        self._stream: Any = None
        self._cancelled = threading.Event()
        self._error: Optional[WalletError] = None

    def _request(self) -> Any:
        raise NotImplementedError

    def _accept(self, update: Any) -> bool:
        raise NotImplementedError

    def _finished(self) -> bool:
        return False

    def __iter__(self) -> Iterator[U]:
        return self

    def __next__(self) -> U:
        while True:
            if self._cancelled.is_set() or self._finished():
                raise StopIteration
            if self._error is not None:
                raise self._error
            with self._lock:
                if self._cancelled.is_set():
                    raise StopIteration
                if self._stream is None:
                    self._stream = self._open_stream(self._endpoint(), self._request(), self._remaining())
                stream = self._stream
            failure: Optional[grpc.RpcError] = None
            try:
                update = next(stream)
            except StopIteration:
                pass
            except grpc.RpcError as error:
                failure = error
            else:
                self._delivered()
                if self._accept(update):
                    if self._finished():
                        self._close_stream()
                    return update  # type: ignore[no-any-return]
                continue
            self._close_stream()
            if self._cancelled.is_set():
                raise StopIteration
            try:
                pause = self._resume_pause(failure)
            except WalletError as error:
                self._error = error
                raise
            if self._cancelled.wait(pause):
                raise StopIteration

    def _close_stream(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()

    def cancel(self) -> bool:
        """Ends the watch (from any thread): the iteration stops. True if it was running."""
        if self._cancelled.is_set():
            return False
        self._cancelled.set()
        self._close_stream()
        return True


class BalanceWatch(_ResumingStream[query_pb2.BalanceUpdate]):
    """A running ``WatchBalances`` that resumes by itself (see the module docstring): an
    iterator of ``BalanceUpdate``, per account in sequence order, gap-free and duplicate-free
    across reconnections. ``cancel()`` (from any thread) ends it; ``last_sequences()`` is what a
    later watch needs to resume."""

    def __init__(
        self,
        open_stream: OpenStream,
        endpoints: Sequence[str],
        account_ids: Sequence[str],
        resume_after_sequence: Optional[Mapping[str, int]] = None,
        *,
        timeout: Optional[float] = None,
        max_resumes: Optional[int] = None,
    ):
        super().__init__(open_stream, endpoints, timeout, max_resumes)
        self._state = _BalanceState(account_ids, resume_after_sequence)

    def _request(self) -> Any:
        return self._state.request()

    def _accept(self, update: Any) -> bool:
        return self._state.accept(update)

    def last_sequences(self) -> dict[str, int]:
        """Per account, the sequence of the last update delivered (or given to resume from)."""
        return dict(self._state.last)


class TransferWatch(_ResumingStream[query_pb2.TransferUpdate]):
    """A running ``WatchTransfer`` that resumes by itself: the transfer's state, then every
    newer state until the final one, after which the iteration stops (a state that came and
    went while disconnected is skipped; the final state always arrives)."""

    def __init__(
        self,
        open_stream: OpenStream,
        endpoints: Sequence[str],
        transaction_id: str,
        *,
        timeout: Optional[float] = None,
        max_resumes: Optional[int] = None,
    ):
        super().__init__(open_stream, endpoints, timeout, max_resumes)
        self._state = _TransferState(transaction_id)

    def _request(self) -> Any:
        return self._state.request()

    def _accept(self, update: Any) -> bool:
        return self._state.accept(update)

    def _finished(self) -> bool:
        return self._state.done


# --- asyncio -------------------------------------------------------------------------------


class _AsyncResumingStream(_Policy, Generic[U]):
    def __init__(
        self,
        open_stream: OpenStream,
        endpoints: Sequence[str],
        timeout: Optional[float],
        max_resumes: Optional[int],
    ):
        super().__init__(endpoints, timeout, max_resumes)
        self._open_stream = open_stream
        self._stream: Any = None
        self._cancelled = False
        self._wakeup: Optional[asyncio.Event] = None
        self._error: Optional[WalletError] = None

    def _request(self) -> Any:
        raise NotImplementedError

    def _accept(self, update: Any) -> bool:
        raise NotImplementedError

    def _finished(self) -> bool:
        return False

    def __aiter__(self) -> AsyncIterator[U]:
        return self

    async def __anext__(self) -> U:
        while True:
            if self._cancelled or self._finished():
                raise StopAsyncIteration
            if self._error is not None:
                raise self._error
            if self._stream is None:
                self._stream = self._open_stream(self._endpoint(), self._request(), self._remaining())
            stream = self._stream
            failure: Optional[grpc.RpcError] = None
            try:
                update = await stream.read()
            except grpc.RpcError as error:
                failure = error
            except asyncio.CancelledError:
                if self._cancelled:
                    raise StopAsyncIteration
                raise
            else:
                if update is not grpc.aio.EOF:
                    self._delivered()
                    if self._accept(update):
                        if self._finished():
                            self._close_stream()
                        return update  # type: ignore[no-any-return]
                    continue
                if stream.cancelled() and self._cancelled:
                    raise StopAsyncIteration
                code = await stream.code()
                if code != grpc.StatusCode.OK:
                    failure = _AioStatus(code, await stream.details(), await stream.trailing_metadata())
            self._close_stream()
            if self._cancelled:
                raise StopAsyncIteration
            try:
                pause = self._resume_pause(failure)
            except WalletError as error:
                self._error = error
                raise
            self._wakeup = asyncio.Event()
            try:
                await asyncio.wait_for(self._wakeup.wait(), pause)
            except asyncio.TimeoutError:
                pass
            self._wakeup = None

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()

    def cancel(self) -> bool:
        """Ends the watch: ``async for`` stops. True if it was running."""
        if self._cancelled:
            return False
        self._cancelled = True
        self._close_stream()
        if self._wakeup is not None:
            self._wakeup.set()
        return True


class _AioStatus(grpc.RpcError):
    """A ``grpc.aio`` stream's final status as an ``RpcError`` (for ``classify``)."""

    def __init__(self, code: grpc.StatusCode, details: Optional[str], trailers: Any):
        super().__init__(f"{code.name}: {details}")
        self._code, self._details, self._trailers = code, details or "", trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailers


class AsyncBalanceWatch(_AsyncResumingStream[query_pb2.BalanceUpdate]):
    """``BalanceWatch`` for asyncio: iterate with ``async for``."""

    def __init__(
        self,
        open_stream: OpenStream,
        endpoints: Sequence[str],
        account_ids: Sequence[str],
        resume_after_sequence: Optional[Mapping[str, int]] = None,
        *,
        timeout: Optional[float] = None,
        max_resumes: Optional[int] = None,
    ):
        super().__init__(open_stream, endpoints, timeout, max_resumes)
        self._state = _BalanceState(account_ids, resume_after_sequence)

    def _request(self) -> Any:
        return self._state.request()

    def _accept(self, update: Any) -> bool:
        return self._state.accept(update)

    def last_sequences(self) -> dict[str, int]:
        """See ``BalanceWatch.last_sequences``."""
        return dict(self._state.last)


class AsyncTransferWatch(_AsyncResumingStream[query_pb2.TransferUpdate]):
    """``TransferWatch`` for asyncio."""

    def __init__(
        self,
        open_stream: OpenStream,
        endpoints: Sequence[str],
        transaction_id: str,
        *,
        timeout: Optional[float] = None,
        max_resumes: Optional[int] = None,
    ):
        super().__init__(open_stream, endpoints, timeout, max_resumes)
        self._state = _TransferState(transaction_id)

    def _request(self) -> Any:
        return self._state.request()

    def _accept(self, update: Any) -> bool:
        return self._state.accept(update)

    def _finished(self) -> bool:
        return self._state.done
