"""An in-process write node for unit tests: a real ``grpc.server`` on a loopback port whose
``Transfer`` and ``TransferBatch`` do what the test says, and record what they saw."""

from __future__ import annotations

import threading
from concurrent import futures
from typing import Callable, Optional

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from wallet_ledger import wallet_pb2
from wallet_ledger._proto.wallet.v1 import wallet_pb2_grpc


def ok(request: wallet_pb2.TransferRequest, token: str = "tok") -> wallet_pb2.TransferResult:
    return wallet_pb2.TransferResult(
        transaction_id=request.transaction_id,
        status="success",
        consistency_token=f"{token}:{request.transaction_id}",
    )


def rejected(
    request: wallet_pb2.TransferRequest, code: grpc.StatusCode, reason: str, field: str = ""
) -> wallet_pb2.TransferResult:
    return wallet_pb2.TransferResult(
        transaction_id=request.transaction_id,
        status="rejected",
        error=wallet_pb2.TransferError(code=code.value[0], reason=reason, message=f"{reason} ({field})", field=field),
    )


def unavailable(request: wallet_pb2.TransferRequest) -> wallet_pb2.TransferResult:
    return wallet_pb2.TransferResult(
        transaction_id=request.transaction_id,
        status="unavailable",
        error=wallet_pb2.TransferError(code=grpc.StatusCode.UNAVAILABLE.value[0], reason="NOT_LEADER"),
    )


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, reason: str, message: str = "no") -> None:
    """Fails the call with a rich status, as the nodes do."""
    status = status_pb2.Status(code=code.value[0], message=message)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="wallet.ledger"))
    status.details.append(detail)
    context.abort_with_status(_Status(code, message, status.SerializeToString()))


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, rich: bytes):
        self.code = code
        self.details = details
        self.trailing_metadata = (("grpc-status-details-bin", rich),)


BatchHandler = Callable[[wallet_pb2.TransferBatchRequest, grpc.ServicerContext], wallet_pb2.TransferBatchResponse]
UnaryHandler = Callable[[wallet_pb2.TransferRequest, grpc.ServicerContext], wallet_pb2.TransferResponse]


class FakeNode(wallet_pb2_grpc.WalletServiceServicer):
    """``batch`` answers TransferBatch (None: UNIMPLEMENTED, like an old server); ``unary``
    answers Transfer (default: success). Every request is recorded with the metadata."""

    def __init__(self, batch: Optional[BatchHandler] = None, unary: Optional[UnaryHandler] = None):
        self.batch_handler = batch
        self.unary_handler = unary
        self.lock = threading.Lock()
        self.batches: list[list[str]] = []  # transaction ids of each TransferBatch call
        self.unary: list[str] = []  # transaction ids of each Transfer call
        self.metadata: list[dict[str, str]] = []
        self.in_flight = 0
        self.in_flight_peak = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        wallet_pb2_grpc.add_WalletServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"127.0.0.1:{self.port}"

    def __enter__(self) -> "FakeNode":
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)

    def _record(self, context: grpc.ServicerContext) -> None:
        self.metadata.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})

    def TransferBatch(self, request, context):  # type: ignore[no-untyped-def]
        with self.lock:
            self._record(context)
            self.batches.append([t.transaction_id for t in request.transfers])
            self.in_flight += 1
            self.in_flight_peak = max(self.in_flight_peak, self.in_flight)
        try:
            if self.batch_handler is None:
                context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
            return self.batch_handler(request, context)
        finally:
            with self.lock:
                self.in_flight -= 1

    def Transfer(self, request, context):  # type: ignore[no-untyped-def]
        with self.lock:
            self._record(context)
            self.unary.append(request.transaction_id)
        if self.unary_handler is not None:
            return self.unary_handler(request, context)
        return wallet_pb2.TransferResponse(
            status="success", transaction_id=request.transaction_id, consistency_token="unary"
        )

    def GetAccount(self, request, context):  # type: ignore[no-untyped-def]
        with self.lock:
            self._record(context)
        return wallet_pb2.GetAccountResponse(
            account=wallet_pb2.Account(account_id=request.account_id, balance="1.00"), position="p"
        )
