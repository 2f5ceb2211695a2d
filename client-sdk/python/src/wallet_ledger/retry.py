"""The retry loop: the Python twin of the Rust SDK's (``client-sdk/src/client.rs``).

A call is retried only when its outcome is unknown (UNAVAILABLE, RESOURCE_EXHAUSTED,
DEADLINE_EXCEEDED, CANCELLED), with full-jitter exponential backoff, a bounded number of
attempts and a total deadline. The caller's request object is sent unchanged on every
attempt, so a transfer keeps its transaction_id and a retry can never pay twice.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Callable, Optional, Sequence, TypeVar

import grpc

from .errors import Indefinite, WalletError, classify, deadline_exceeded, leader_hint

T = TypeVar("T")

#: Past this exponent the ceiling is ``backoff_max`` anyway; stopping keeps floats finite.
_EXPONENT_MAX = 30
#: Floor on one attempt's timeout, so the last attempt before the deadline is still usable.
_ATTEMPT_TIMEOUT_MIN = 0.05


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to try. The defaults are the Rust SDK's."""

    #: Deadline of one attempt in seconds (sent to the server as ``grpc-timeout``).
    call_timeout: float = 5.0
    #: Deadline of a whole call, all attempts and sleeps included.
    total_deadline: float = 15.0
    #: Most attempts one call may make, redirects to the leader included.
    attempts_max: int = 10
    #: Backoff ceiling after the first failed attempt; doubles with every further one.
    backoff_base: float = 0.02
    #: Cap on the backoff ceiling.
    backoff_max: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.attempts_max <= 100:
            raise ValueError("attempts_max must be between 1 and 100")
        if self.call_timeout <= 0 or self.total_deadline <= 0:
            raise ValueError("call_timeout and total_deadline must be positive")
        if not 0 <= self.backoff_base <= self.backoff_max:
            raise ValueError("need 0 <= backoff_base <= backoff_max")


def backoff_ceiling(attempt: int, base: float, maximum: float) -> float:
    """``min(maximum, base * 2**attempt)`` for failed attempt number ``attempt`` (0-based)."""
    return min(maximum, base * float(2 ** min(attempt, _EXPONENT_MAX)))


def full_jitter(attempt: int, base: float, maximum: float) -> float:
    """A uniformly random sleep in ``[0, backoff_ceiling(attempt, base, maximum)]``."""
    return random.uniform(0.0, backoff_ceiling(attempt, base, maximum))


def call_with_retry(
    send: Callable[[str, float], T],
    endpoints: Sequence[str],
    policy: RetryPolicy,
    first: Optional[str] = None,
    on_success: Optional[Callable[[str], None]] = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    deadline: Optional[float] = None,
) -> T:
    """Calls ``send(endpoint, timeout_seconds)`` until it returns, following NOT_LEADER
    hints at once and moving to the next endpoint after a backoff on other unknown
    outcomes. Raises ``Rejected`` at once for a definite answer, ``Indefinite`` when the
    attempts or the deadline run out. ``send`` must send the same request every time.
    ``deadline`` (a ``clock()`` instant) replaces ``policy.total_deadline`` from now, for a
    call that already spent part of its time (a transfer whose stream gave no outcome in time)."""
    attempts = Attempts(endpoints, policy, first=first, clock=clock, deadline=deadline)
    while True:
        try:
            result = send(attempts.target, attempts.timeout())
        except grpc.RpcError as rpc_error:
            pause = attempts.failed(rpc_error)
            if pause > 0:
                sleep(pause)
            continue
        if on_success is not None:
            on_success(attempts.target)
        return result


class Attempts:
    """The state of one call's retry loop, shared by ``call_with_retry`` and the asyncio
    client's twin: where the next attempt goes, its timeout, and what a failure means."""

    def __init__(
        self,
        endpoints: Sequence[str],
        policy: RetryPolicy,
        *,
        first: Optional[str] = None,
        clock: Callable[[], float] = time.monotonic,
        deadline: Optional[float] = None,
    ):
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        self.endpoints = endpoints
        self.policy = policy
        self.clock = clock
        if deadline is None:
            deadline = clock() + policy.total_deadline
        elif clock() >= deadline:
            raise deadline_exceeded("the call's deadline passed before it could be sent")
        self.deadline = deadline
        self.target = first or endpoints[0]
        self.attempt = 0

    def timeout(self) -> float:
        """The next attempt's timeout: the call timeout, cut to what is left."""
        remaining = self.deadline - self.clock()
        return max(min(self.policy.call_timeout, remaining), _ATTEMPT_TIMEOUT_MIN)

    def failed(self, rpc_error: grpc.RpcError) -> float:
        """Raises the typed error when the call must stop; otherwise moves ``target`` and
        answers how long to sleep first (0 to follow a leader hint at once)."""
        error: WalletError = classify(rpc_error)
        self.attempt += 1
        if not isinstance(error, Indefinite) or self.attempt >= self.policy.attempts_max:
            raise error
        hint = leader_hint(error)
        if hint is not None and hint != self.target:
            self.target = hint
            if self.clock() >= self.deadline:
                raise error
            return 0.0
        self.target = _next(self.endpoints, self.target)
        pause = full_jitter(self.attempt - 1, self.policy.backoff_base, self.policy.backoff_max)
        if error.details.retry_delay is not None:
            pause = max(pause, error.details.retry_delay)
        if self.clock() + pause >= self.deadline:
            raise error
        return pause


def _next(endpoints: Sequence[str], current: str) -> str:
    """The endpoint after ``current`` (the first if ``current`` came from a hint)."""
    try:
        return endpoints[(list(endpoints).index(current) + 1) % len(endpoints)]
    except ValueError:
        return endpoints[0]
