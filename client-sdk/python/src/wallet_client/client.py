"""Clients of the write nodes (``WalletService``) and of a read node (``QueryService``)."""

from __future__ import annotations

import threading
import uuid
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import grpc

from wallet.v1 import query_pb2, query_pb2_grpc, wallet_pb2, wallet_pb2_grpc

from .retry import RetryPolicy, call_with_retry

#: Channels kept to nodes learnt from leader hints rather than configured.
DISCOVERED_ENDPOINTS_MAX = 16
#: Routing keys (accounts) whose last known leader is remembered.
LEADER_CACHE_MAX = 4096


def new_transaction_id() -> str:
    """A fresh idempotency key: a random UUID in canonical form. Make one per intended
    transfer and keep it for every retry."""
    return str(uuid.uuid4())


def _normalize(endpoint: str) -> str:
    endpoint = endpoint.strip().rstrip("/")
    if endpoint.startswith("http://"):
        endpoint = endpoint[len("http://") :]
    if not endpoint or "://" in endpoint:
        raise ValueError(f"endpoint {endpoint!r}: expected host:port (plain-text gRPC)")
    return endpoint


class _Channels:
    """One channel per node, made on first use; closed together."""

    def __init__(self, endpoints: Sequence[str]):
        self.endpoints = list(dict.fromkeys(_normalize(e) for e in endpoints))
        if not self.endpoints:
            raise ValueError("at least one endpoint is required")
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def get(self, endpoint: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(endpoint)
            if channel is None:
                channel = grpc.insecure_channel(endpoint)
                if len(self._channels) < len(self.endpoints) + DISCOVERED_ENDPOINTS_MAX:
                    self._channels[endpoint] = channel
            return channel

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()


class WalletClient:
    """The write API with routing and retries. Writes go to the account's partition
    leader, learnt from NOT_LEADER hints; calls whose outcome is unknown are retried with
    the same request (same transaction_id) under ``policy``. Thread-safe."""

    def __init__(self, endpoints: Sequence[str], policy: RetryPolicy = RetryPolicy()):
        self._channels = _Channels(endpoints)
        self.policy = policy
        self._leaders: dict[str, str] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> "WalletClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channels.close()

    def _call(self, method: str, request, routing_key: str = ""):
        def send(endpoint: str, timeout: float):
            stub = wallet_pb2_grpc.WalletServiceStub(self._channels.get(endpoint))
            return getattr(stub, method)(request, timeout=timeout)

        def remember(endpoint: str) -> None:
            with self._lock:
                if len(self._leaders) >= LEADER_CACHE_MAX:
                    self._leaders.clear()
                self._leaders[routing_key] = endpoint

        with self._lock:
            first = self._leaders.get(routing_key)
        return call_with_retry(
            send,
            self._channels.endpoints,
            self.policy,
            first=first,
            on_success=remember if routing_key else None,
        )

    def open_account(
        self, account_id: str, currency: str, allow_negative_balance: bool = False
    ) -> wallet_pb2.Account:
        """Opens a single-currency account; the same call again is a no-op success, with
        other parameters it is ``Rejected`` (ALREADY_EXISTS)."""
        request = wallet_pb2.OpenAccountRequest(
            account_id=account_id,
            currency=currency,
            allow_negative_balance=allow_negative_balance,
        )
        return self._call("OpenAccount", request, account_id).account

    def transfer(
        self,
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
        original outcome and never pays twice."""
        request = wallet_pb2.TransferRequest(
            transaction_id=transaction_id,
            from_account=from_account,
            to_account=to_account,
            amount=amount,
            currency=currency,
        )
        return self._call("Transfer", request, from_account)

    def get_account(self, account_id: str) -> wallet_pb2.GetAccountResponse:
        """The authoritative account, read linearizably, with the position it reflects."""
        return self._call("GetAccount", wallet_pb2.GetAccountRequest(account_id=account_id))

    def get_transfer(self, transaction_id: str) -> wallet_pb2.Transfer:
        """A transfer's status and outcome; ``Rejected`` NOT_FOUND if the id is unknown."""
        request = wallet_pb2.GetTransferRequest(transaction_id=transaction_id)
        return self._call("GetTransfer", request).transfer


class QueryClient:
    """The read API of one or more read nodes (all fold the same log, so any will do)."""

    def __init__(self, endpoints: Sequence[str], policy: RetryPolicy = RetryPolicy()):
        self._channels = _Channels(endpoints)
        self.policy = policy

    def __enter__(self) -> "QueryClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channels.close()

    def _stub(self, endpoint: str) -> query_pb2_grpc.QueryServiceStub:
        return query_pb2_grpc.QueryServiceStub(self._channels.get(endpoint))

    def get_balance(
        self, account_id: str, consistency_token: str = ""
    ) -> query_pb2.GetBalanceResponse:
        """The projected balance; with a token from the write API, at least that fresh."""
        request = query_pb2.GetBalanceRequest(
            account_id=account_id, consistency_token=consistency_token
        )
        return call_with_retry(
            lambda endpoint, timeout: self._stub(endpoint).GetBalance(request, timeout=timeout),
            self._channels.endpoints,
            self.policy,
        )

    def watch_balances(
        self,
        account_ids: Iterable[str],
        resume_after_sequence: Optional[Mapping[str, int]] = None,
        timeout: Optional[float] = None,
    ) -> Iterator[query_pb2.BalanceUpdate]:
        """The current balance of each account, then every change, in order. The returned
        iterator is also a ``grpc.Call``: ``.cancel()`` ends the watch. To resume after an
        error, watch again with the last ``balance.sequence`` seen per account."""
        request = query_pb2.WatchBalancesRequest(
            account_ids=list(account_ids),
            resume_after_sequence=dict(resume_after_sequence or {}),
        )
        return self._stub(self._channels.endpoints[0]).WatchBalances(request, timeout=timeout)
