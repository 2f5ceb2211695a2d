"""Transparent batching of ``WalletClient.transfer()``: concurrent calls on one client are
gathered into ``TransferBatch`` calls, while each call keeps its own outcome, errors and
retry-with-the-same-id semantics. The same algorithm as the Rust and TypeScript SDKs':

* A call picks the node it would be sent to: the cached leader of its routing key
  (``from_account``), else the first endpoint.
* Per node, at most ``in_flight_max`` batches are in flight. A call that finds fewer goes at
  once (alone, or with whatever is queued for that node); otherwise it waits in the node's
  queue, and when a batch to the node returns, everything queued (at most
  ``TRANSFER_BATCH_MAX``, in arrival order) goes as the next batch. Nothing waits when the
  client is idle (no timer, no linger) and under load batches grow by themselves.
* A batch call has the call timeout. Results are matched to callers by position.
  "success" answers the caller; "rejected" raises the ``Rejected`` error the unary call would
  raise; "unavailable", a malformed or missing result, or a failed batch call (transport
  error, UNAVAILABLE, RESOURCE_EXHAUSTED, deadline, UNIMPLEMENTED from an old server, ...)
  sends that caller's request again on its own through the unary ``Transfer`` retry loop
  (same transaction_id), within what is left of its own deadline.
* A successful batch records the node as the leader of the routing keys of its successful
  items.

Threads. There is no background thread: a batch is sent by one of the threads whose calls are
in it, its *leader*. A call that finds the lane below its limit leads the batch it starts.
When a batch returns, its leader, holding the lane's lock, either takes everything queued as
the next batch (the lane's slot passes on, the in-flight count is unchanged) and names the
first call of it the new batch's leader, waking that thread, or, with nothing queued, frees
the slot. Then it hands out its own batch's results and returns. Hence the invariant, kept
under the lock: a call is queued only while ``in_flight == in_flight_max``, and every slot
drains the queue when it frees, so no queued call is ever left without a sender; and no
thread sends a batch it has no call in, so no caller waits longer than its own batch.

A queued call whose deadline passes leaves the queue (it was never sent) and raises
``Indefinite`` DEADLINE_EXCEEDED; one whose batch is in flight stops waiting at its
deadline with the same error (the batch may still apply it: retry with the same id).
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Callable, Deque, Optional, Sequence, Union

import grpc

from ._proto.wallet.v1 import wallet_pb2
from .errors import (
    ERROR_DOMAIN,
    RETRYABLE_CODES,
    ErrorDetails,
    Rejected,
    WalletError,
    deadline_exceeded,
)

#: Most transfers in one TransferBatch call (the proto's limit).
TRANSFER_BATCH_MAX = 1024
#: Default number of batches in flight per node.
BATCH_IN_FLIGHT_MAX_DEFAULT = 2
#: Floor on a batch call's timeout.
_BATCH_TIMEOUT_MIN = 0.05

_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class _Fallback:
    """The outcome "send me again through the unary retry loop"."""


FALLBACK = _Fallback()

Outcome = Union[wallet_pb2.TransferResponse, WalletError, _Fallback]


@dataclasses.dataclass(eq=False)
class _Call:
    request: wallet_pb2.TransferRequest
    deadline: float
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    outcome: Optional[Outcome] = None
    #: Set (under the lane lock) when this call must send the batch it is the first of.
    lead: Optional[list["_Call"]] = None
    #: "queued", "sent" or "abandoned" (its caller stopped waiting).
    state: str = "queued"


@dataclasses.dataclass
class _Lane:
    in_flight: int = 0
    queue: Deque[_Call] = dataclasses.field(default_factory=collections.deque)


@dataclasses.dataclass(frozen=True)
class BatchStats:
    """Counters of one client's ``transfer()`` calls (see ``WalletClient.stats()``)."""

    #: ``transfer()`` calls made.
    transfers: int = 0
    #: TransferBatch calls sent.
    batches: int = 0
    #: Transfers sent inside TransferBatch calls.
    batched_transfers: int = 0
    #: The largest batch sent.
    largest_batch: int = 0
    #: Transfers sent through the unary ``Transfer`` path (batching off, or a fallback).
    unary_transfers: int = 0
    #: Batch calls that failed as a whole (every item then fell back to unary).
    failed_batches: int = 0


def result_outcome(
    request: wallet_pb2.TransferRequest, result: Optional[wallet_pb2.TransferResult]
) -> Outcome:
    """What one ``TransferResult`` means for the call that sent ``request``."""
    if result is None or result.transaction_id not in ("", request.transaction_id):
        return FALLBACK
    if result.status == "success":
        return wallet_pb2.TransferResponse(
            status=result.status,
            transaction_id=result.transaction_id or request.transaction_id,
            consistency_token=result.consistency_token,
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
            # As the unary status has it (proto/src/error.rs): a BadRequest field violation for
            # invalid input only, although TransferResult.error names a field for every
            # rejection; so a batched call's error is the unary call's, field included.
            field_violations=(
                [(error.field, error.message)]
                if error.field and code == grpc.StatusCode.INVALID_ARGUMENT
                else []
            ),
        )
        return Rejected(details, error.reason or code.name)
    return FALLBACK  # "unavailable", or something this SDK does not know


class Batcher:
    """The per-node lanes of one client (see the module docstring)."""

    def __init__(
        self,
        send_batch: Callable[[str, wallet_pb2.TransferBatchRequest, float], wallet_pb2.TransferBatchResponse],
        on_success: Callable[[str, Sequence[wallet_pb2.TransferRequest]], None],
        in_flight_max: int,
        call_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        if in_flight_max < 1:
            raise ValueError("in_flight_max must be at least 1 (0 means: no Batcher)")
        self._send_batch = send_batch
        self._on_success = on_success
        self._in_flight_max = in_flight_max
        self._call_timeout = call_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._lanes: dict[str, _Lane] = {}
        self._stats = BatchStats()
        #: Nodes that answered UNIMPLEMENTED (an older server): no more batches to them.
        self._unsupported: set[str] = set()

    def stats(self) -> BatchStats:
        with self._lock:
            return self._stats

    def _bump(self, **increments: int) -> None:
        values = dataclasses.asdict(self._stats)
        for name, increment in increments.items():
            values[name] += increment
        self._stats = BatchStats(**values)

    def supports(self, node: str) -> bool:
        with self._lock:
            return node not in self._unsupported

    def submit(self, node: str, request: wallet_pb2.TransferRequest, deadline: float) -> Outcome:
        """Sends ``request`` to ``node`` in a batch and answers its outcome (``FALLBACK``:
        the caller sends it again through the unary retry loop). Raises ``Indefinite`` if
        the caller's ``deadline`` passes first."""
        call = _Call(request, deadline)
        with self._lock:
            lane = self._lanes.setdefault(node, _Lane())
            if lane.in_flight < self._in_flight_max:
                lane.in_flight += 1
                call.state = "sent"
                batch = [call, *self._take(lane, TRANSFER_BATCH_MAX - 1)]
            else:
                lane.queue.append(call)
                batch = None
        if batch is None:
            if not call.done.wait(timeout=max(deadline - self._clock(), 0.0)):
                with self._lock:
                    if call.lead is None and not call.done.is_set():
                        if call.state == "queued":
                            self._lanes[node].queue.remove(call)
                            raise deadline_exceeded("the call's deadline passed while it waited for a batch")
                        call.state = "abandoned"
                        raise deadline_exceeded("the call's deadline passed while its batch was in flight")
            batch = call.lead
        if batch is not None:
            self._run(node, batch)
        assert call.outcome is not None
        return call.outcome

    def _take(self, lane: _Lane, limit: int) -> list[_Call]:
        taken: list[_Call] = []
        while lane.queue and len(taken) < limit:
            call = lane.queue.popleft()
            call.state = "sent"
            taken.append(call)
        return taken

    def _run(self, node: str, batch: list[_Call]) -> None:
        """Sends ``batch`` (this thread's call is in it), passes the lane's slot on, then
        hands out the results."""
        outcomes: list[Outcome] = [FALLBACK for _ in batch]
        try:
            outcomes = self._send(node, batch)
        finally:  # whatever happens, the slot passes on and every caller gets an answer
            with self._lock:
                lane = self._lanes[node]
                following = self._take(lane, TRANSFER_BATCH_MAX)
                if following:
                    following[0].lead = following
                else:
                    lane.in_flight -= 1
                    if lane.in_flight == 0 and not lane.queue:
                        del self._lanes[node]
            if following:
                following[0].done.set()  # wakes the next batch's leader
            for call, outcome in zip(batch, outcomes):
                call.outcome = outcome
                call.done.set()

    def _send(self, node: str, batch: list[_Call]) -> list[Outcome]:
        requests = [call.request for call in batch]
        # The call timeout, cut to the longest time any caller in the batch still has.
        remaining = max(call.deadline for call in batch) - self._clock()
        timeout = max(min(self._call_timeout, remaining), _BATCH_TIMEOUT_MIN)
        with self._lock:
            self._bump(batches=1, batched_transfers=len(batch))
            self._stats = dataclasses.replace(
                self._stats, largest_batch=max(self._stats.largest_batch, len(batch))
            )
        try:
            response = self._send_batch(node, wallet_pb2.TransferBatchRequest(transfers=requests), timeout)
        except Exception as error:  # any failure: each call retries on its own
            code = error.code() if isinstance(error, grpc.RpcError) and hasattr(error, "code") else None
            with self._lock:
                self._bump(failed_batches=1)
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    self._unsupported.add(node)
            return [FALLBACK for _ in batch]
        results = list(response.results)
        if len(results) != len(batch):
            results = []  # cannot be matched by position: every call retries on its own
        outcomes = [
            result_outcome(call.request, results[i] if i < len(results) else None)
            for i, call in enumerate(batch)
        ]
        succeeded = [
            call.request
            for call, outcome in zip(batch, outcomes)
            if isinstance(outcome, wallet_pb2.TransferResponse)
        ]
        if succeeded:
            self._on_success(node, succeeded)
        return outcomes
