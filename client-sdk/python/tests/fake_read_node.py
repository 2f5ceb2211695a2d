"""An in-process read node for unit tests: a real ``grpc.server`` on a loopback port whose
``WatchBalances`` and ``WatchTransfer`` streams follow a script (send these updates, then
break the stream, replay old updates on the next one, cut the watcher off with WATCH_LAGGED,
...), whose ``ListTransfers`` and ``GetBalanceAt`` answer from a small fixed history, and whose
``GetBalance`` answers the balances the test gives it.
Every request is recorded."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any, Iterator, Optional, Sequence, Union

import grpc

from fake_node import abort
from wallet_ledger import query_pb2, wallet_pb2
from wallet_ledger._proto.wallet.v1 import cluster_pb2, cluster_pb2_grpc, query_pb2_grpc

#: A script step: an update to send, ``("fail", code, reason)`` (the stream ends with that
#: rich status), ``("sleep", seconds)``, or ``("hang",)`` (send nothing until cancelled).
Step = Union[query_pb2.BalanceUpdate, query_pb2.TransferUpdate, tuple[Any, ...]]


def balance(account: str, sequence: int, snapshot: bool = False) -> query_pb2.BalanceUpdate:
    """The update of ``account`` at ``sequence``: its balance is ``sequence`` units."""
    return query_pb2.BalanceUpdate(
        snapshot=snapshot,
        balance=query_pb2.Balance(
            account_id=account, currency="USD", balance=f"{sequence}.00", balance_minor=sequence * 100, sequence=sequence
        ),
        delta_minor=0 if snapshot else 100,
        position=f"v1.0.{sequence}",
    )


def state(version: int, final: bool = False) -> query_pb2.TransferUpdate:
    return query_pb2.TransferUpdate(
        transaction_id="t1",
        version=version,
        is_final=final,
        state=query_pb2.TRANSFER_STATE_COMPLETED if final else query_pb2.TRANSFER_STATE_IN_FLIGHT,
        status=wallet_pb2.TRANSFER_STATUS_COMPLETED if final else wallet_pb2.TRANSFER_STATUS_IN_FLIGHT,
    )


def fail(code: grpc.StatusCode, reason: str) -> tuple[Any, ...]:
    return ("fail", code, reason)


#: The history of account "h": sequences 1..HISTORY (newest first), pages of 2 by default.
HISTORY = 5


class FakeReadNode(query_pb2_grpc.QueryServiceServicer, cluster_pb2_grpc.ClusterServiceServicer):
    """``watches``: one script per ``WatchBalances`` call, in call order (the last repeats);
    ``transfer_watches`` likewise for ``WatchTransfer``."""

    def __init__(
        self,
        watches: Sequence[Sequence[Step]] = (),
        transfer_watches: Sequence[Sequence[Step]] = (),
        port: int = 0,
    ):
        self.watches = list(watches)
        self.transfer_watches = list(transfer_watches)
        self.lock = threading.Lock()
        self.watch_requests: list[query_pb2.WatchBalancesRequest] = []
        self.transfer_requests: list[query_pb2.WatchTransferRequest] = []
        self.list_requests: list[query_pb2.ListTransfersRequest] = []
        #: What GetBalance answers, by account id (unknown ids: NOT_FOUND ACCOUNT_NOT_FOUND);
        #: every GetBalanceRequest lands in ``balance_requests``.
        self.balances: dict[str, query_pb2.Balance] = {}
        self.balance_requests: list[query_pb2.GetBalanceRequest] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        query_pb2_grpc.add_QueryServiceServicer_to_server(self, self.server)
        cluster_pb2_grpc.add_ClusterServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.endpoint = f"127.0.0.1:{self.port}"

    def __enter__(self) -> "FakeReadNode":
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)

    def _play(self, script: Sequence[Step], context: grpc.ServicerContext) -> Iterator[Any]:
        for step in script:
            if isinstance(step, tuple):
                if step[0] == "fail":
                    abort(context, step[1], step[2])
                elif step[0] == "sleep":
                    time.sleep(step[1])
                elif step[0] == "hang":
                    while context.is_active():
                        time.sleep(0.01)
                    return
            else:
                yield step

    def WatchBalances(self, request, context):  # type: ignore[no-untyped-def]
        with self.lock:
            call = len(self.watch_requests)
            self.watch_requests.append(request)
        if not self.watches:
            return
        yield from self._play(self.watches[min(call, len(self.watches) - 1)], context)

    def WatchTransfer(self, request, context):  # type: ignore[no-untyped-def]
        with self.lock:
            call = len(self.transfer_requests)
            self.transfer_requests.append(request)
        if not self.transfer_watches:
            return
        yield from self._play(self.transfer_watches[min(call, len(self.transfer_watches) - 1)], context)

    def ListTransfers(self, request, context):  # type: ignore[no-untyped-def]
        with self.lock:
            self.list_requests.append(request)
        if request.account_id != "h":
            abort(context, grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
        size = request.page_size or 2
        top = int(request.page_token) if request.page_token else HISTORY
        sequences = [s for s in range(top, 0, -1)][:size]
        entries = [
            query_pb2.HistoryEntry(
                sequence=s, delta="1.00", balance_after=f"{s}.00", reference=f"ref-{s}", metadata={"seq": str(s)}
            )
            for s in sequences
        ]
        rest = top - len(sequences)
        return query_pb2.ListTransfersResponse(entries=entries, next_page_token=str(rest) if rest > 0 else "")

    def GetBalance(self, request, context):  # type: ignore[no-untyped-def]
        with self.lock:
            self.balance_requests.append(request)
            found = self.balances.get(request.account_id)
        if found is None:
            abort(context, grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
        return query_pb2.GetBalanceResponse(balance=found, position="v1.0.1")

    def GetBalanceAt(self, request, context):  # type: ignore[no-untyped-def]
        which = request.WhichOneof("point")
        if which == "position":
            sequence = int(request.position.rsplit(".", 1)[-1])
        elif which == "timestamp_ms":
            sequence = request.timestamp_ms // 1000
        else:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "MISSING_POINT")
        return query_pb2.GetBalanceAtResponse(balance=balance(request.account_id, sequence).balance)

    def GetClusterStatus(self, request, context):  # type: ignore[no-untyped-def]
        return cluster_pb2.GetClusterStatusResponse(node_id=7)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sequences(updates: Sequence[query_pb2.BalanceUpdate], account: Optional[str] = None) -> list[int]:
    return [u.balance.sequence for u in updates if account is None or u.balance.account_id == account]
