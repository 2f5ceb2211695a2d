"""An in-process write node for unit tests: a real ``grpc.server`` on a loopback port whose
``Transfer``, ``SubmitTransfers``, ``TransferLegs``, the hold calls and the account calls do what
the test says, and record what they saw."""

from __future__ import annotations

import queue
import threading
from concurrent import futures
from typing import Any, Callable, Iterator, Optional, Union

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


def abort(
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    reason: str,
    message: str = "no",
    metadata: Optional[dict[str, str]] = None,
) -> None:
    """Fails the call with a rich status, as the nodes do (``metadata``: the ErrorInfo's)."""
    status = status_pb2.Status(code=code.value[0], message=message)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="wallet.ledger", metadata=metadata or {}))
    status.details.append(detail)
    context.abort_with_status(_Status(code, message, status.SerializeToString()))


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, rich: bytes):
        self.code = code
        self.details = details
        self.trailing_metadata = (("grpc-status-details-bin", rich),)


StreamHandler = Callable[[Iterator[wallet_pb2.TransferRequest], grpc.ServicerContext], Iterator[wallet_pb2.TransferResult]]
UnaryHandler = Callable[[wallet_pb2.TransferRequest, grpc.ServicerContext], wallet_pb2.TransferResponse]


def answering(
    answer: Callable[[wallet_pb2.TransferRequest], Optional[wallet_pb2.TransferResult]] = ok,
) -> StreamHandler:
    """A SubmitTransfers handler answering each request as it arrives (None: never)."""

    def handle(requests: Iterator[wallet_pb2.TransferRequest], context: grpc.ServicerContext) -> Iterator[wallet_pb2.TransferResult]:
        for request in requests:
            result = answer(request)
            if result is not None:
                yield result

    return handle


#: What a ``Remote`` stream sends: a result, ``END`` (the stream ends with OK) or a status
#: code (it ends with that error).
END = "end"
Sent = Union[wallet_pb2.TransferResult, str, grpc.StatusCode]


class Remote:
    """A SubmitTransfers handler the test drives: each stream's requests land in
    ``received`` as they are read, and the stream sends what the test puts in ``send``."""

    def __init__(self) -> None:
        self.received: "queue.Queue[wallet_pb2.TransferRequest]" = queue.Queue()
        self.send: "queue.Queue[Sent]" = queue.Queue()

    def take(self, count: int, timeout: float = 5.0) -> list[wallet_pb2.TransferRequest]:
        return [self.received.get(timeout=timeout) for _ in range(count)]

    def __call__(self, requests: Iterator[wallet_pb2.TransferRequest], context: grpc.ServicerContext) -> Iterator[wallet_pb2.TransferResult]:
        def read() -> None:
            try:
                for request in requests:
                    self.received.put(request)
            except Exception:  # noqa: BLE001 - the call ended
                pass

        threading.Thread(target=read, daemon=True).start()
        while context.is_active():
            try:
                item = self.send.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(item, grpc.StatusCode):
                abort(context, item, "STREAM_BROKEN")
            if isinstance(item, str):
                return
            yield item


class FakeNode(wallet_pb2_grpc.WalletServiceServicer):
    """``stream`` answers SubmitTransfers (default: success for each request, as it comes;
    None: UNIMPLEMENTED, like an old server); ``unary`` answers Transfer (default: success).
    Every call is recorded with its metadata, and every request of a stream."""

    def __init__(self, stream: Optional[StreamHandler] = answering(), unary: Optional[UnaryHandler] = None):
        self.stream_handler = stream
        self.unary_handler = unary
        #: Answers AuthorizeTransfer, CaptureTransfer and VoidTransfer (method name, request,
        #: context); default: the hold, PENDING. Every such call lands in ``holds``.
        self.hold_handler: Optional[Callable[[str, Any, grpc.ServicerContext], wallet_pb2.HoldResponse]] = None
        self.holds: list[tuple[str, Any]] = []
        #: Answers FreezeAccount, UnfreezeAccount, CloseAccount and SetOverdraftLimit (method
        #: name, request, context); default: the account with the status or limit the call
        #: gives it. Every such call lands in ``lifecycle``.
        self.lifecycle_handler: Optional[Callable[[str, Any, grpc.ServicerContext], wallet_pb2.Account]] = None
        self.lifecycle: list[tuple[str, Any]] = []
        #: Answers TransferLegs (request, context); default: success under the request's id,
        #: consistency token "legs". Every TransferLegsRequest lands in ``legs_requests``.
        self.legs_handler: Optional[Callable[[wallet_pb2.TransferLegsRequest, grpc.ServicerContext], wallet_pb2.TransferResponse]] = None
        self.legs_requests: list[wallet_pb2.TransferLegsRequest] = []
        #: Every OpenAccountRequest received, how it came ("unary" OpenAccount, "stream"
        #: OpenAccounts), in order. Both answer the account as asked (reference and metadata
        #: included), and GetAccount answers the last one opened under the id; OpenAccounts
        #: answers the ids in ``open_unavailable`` "unavailable" (as a node that does not lead
        #: their partition would), for the client to retry them alone.
        self.open_requests: list[tuple[str, wallet_pb2.OpenAccountRequest]] = []
        self.open_unavailable: set[str] = set()
        self.lock = threading.Lock()
        self.streams: list[list[str]] = []  # transaction ids read from each SubmitTransfers call
        self.unary: list[str] = []  # transaction ids of each Transfer call
        #: Every TransferRequest received, whole (Transfer, SubmitTransfers, TransferBatch), in
        #: order; GetTransfer answers the last one under the id asked, as a COMPLETED transfer.
        self.transfer_requests: list[wallet_pb2.TransferRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.open_streams = 0
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

    def SubmitTransfers(self, request_iterator, context):  # type: ignore[no-untyped-def]
        with self.lock:
            self._record(context)
            seen: list[str] = []
            self.streams.append(seen)
            self.open_streams += 1
        try:
            if self.stream_handler is None:
                context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")

            def recorded() -> Iterator[wallet_pb2.TransferRequest]:
                for request in request_iterator:
                    with self.lock:
                        seen.append(request.transaction_id)
                        self.transfer_requests.append(request)
                    yield request

            yield from self.stream_handler(recorded(), context)
        finally:
            with self.lock:
                self.open_streams -= 1

    def Transfer(self, request, context):  # type: ignore[no-untyped-def]
        with self.lock:
            self._record(context)
            self.unary.append(request.transaction_id)
            self.transfer_requests.append(request)
        if self.unary_handler is not None:
            return self.unary_handler(request, context)
        return wallet_pb2.TransferResponse(
            status="success", transaction_id=request.transaction_id, consistency_token="unary"
        )

    def TransferBatch(self, request, context):  # type: ignore[no-untyped-def]
        with self.lock:
            self._record(context)
            self.transfer_requests.extend(request.transfers)
        return wallet_pb2.TransferBatchResponse(results=[ok(t, "batch") for t in request.transfers])

    def TransferLegs(self, request, context):  # type: ignore[no-untyped-def]
        with self.lock:
            self._record(context)
            self.legs_requests.append(request)
        if self.legs_handler is not None:
            return self.legs_handler(request, context)
        return wallet_pb2.TransferResponse(
            status="success", transaction_id=request.transaction_id, consistency_token="legs"
        )

    def GetTransfer(self, request, context):  # type: ignore[no-untyped-def]
        with self.lock:
            self._record(context)
            sent = [r for r in self.transfer_requests if r.transaction_id == request.transaction_id]
        if not sent:
            abort(context, grpc.StatusCode.NOT_FOUND, "TRANSFER_NOT_FOUND")
        last = sent[-1]
        return wallet_pb2.GetTransferResponse(
            transfer=wallet_pb2.Transfer(
                transaction_id=last.transaction_id,
                from_account=last.from_account,
                to_account=last.to_account,
                amount=last.amount,
                currency=last.currency,
                status=wallet_pb2.TRANSFER_STATUS_COMPLETED,
                reference=last.reference,
                metadata=dict(last.metadata),
            )
        )

    def _hold(self, method: str, request, context):  # type: ignore[no-untyped-def]
        with self.lock:
            self._record(context)
            self.holds.append((method, request))
        if self.hold_handler is not None:
            return self.hold_handler(method, request, context)
        return wallet_pb2.HoldResponse(
            transfer=wallet_pb2.Transfer(
                transaction_id=request.transaction_id,
                from_account=request.from_account,
                status=wallet_pb2.TRANSFER_STATUS_PENDING,
                hold=wallet_pb2.HoldInfo(),
            ),
            consistency_token="hold",
        )

    def AuthorizeTransfer(self, request, context):  # type: ignore[no-untyped-def]
        return self._hold("AuthorizeTransfer", request, context)

    def CaptureTransfer(self, request, context):  # type: ignore[no-untyped-def]
        return self._hold("CaptureTransfer", request, context)

    def VoidTransfer(self, request, context):  # type: ignore[no-untyped-def]
        return self._hold("VoidTransfer", request, context)

    def _lifecycle(self, method: str, request, context, **changed):  # type: ignore[no-untyped-def]
        with self.lock:
            self._record(context)
            self.lifecycle.append((method, request))
        if self.lifecycle_handler is not None:
            return self.lifecycle_handler(method, request, context)
        fields = dict(account_id=request.account_id, currency="USD", balance="0.00", status=wallet_pb2.ACCOUNT_STATUS_ACTIVE)
        return wallet_pb2.Account(**{**fields, **changed})

    def FreezeAccount(self, request, context):  # type: ignore[no-untyped-def]
        account = self._lifecycle("FreezeAccount", request, context, status=wallet_pb2.ACCOUNT_STATUS_FROZEN)
        return wallet_pb2.FreezeAccountResponse(account=account)

    def UnfreezeAccount(self, request, context):  # type: ignore[no-untyped-def]
        return wallet_pb2.UnfreezeAccountResponse(account=self._lifecycle("UnfreezeAccount", request, context))

    def CloseAccount(self, request, context):  # type: ignore[no-untyped-def]
        account = self._lifecycle("CloseAccount", request, context, status=wallet_pb2.ACCOUNT_STATUS_CLOSED)
        return wallet_pb2.CloseAccountResponse(account=account)

    def SetOverdraftLimit(self, request, context):  # type: ignore[no-untyped-def]
        account = self._lifecycle("SetOverdraftLimit", request, context, overdraft_limit=request.overdraft_limit)
        return wallet_pb2.SetOverdraftLimitResponse(account=account)

    def GetAccount(self, request, context):  # type: ignore[no-untyped-def]
        with self.lock:
            self._record(context)
            opened = [r for _, r in self.open_requests if r.account_id == request.account_id]
        account = opened_account(opened[-1]) if opened else wallet_pb2.Account(account_id=request.account_id)
        account.balance = "1.00"
        return wallet_pb2.GetAccountResponse(account=account, position="p")

    def OpenAccount(self, request, context):  # type: ignore[no-untyped-def]
        with self.lock:
            self._record(context)
            self.open_requests.append(("unary", request))
        return wallet_pb2.OpenAccountResponse(account=opened_account(request))

    def OpenAccounts(self, request_iterator, context):  # type: ignore[no-untyped-def]
        with self.lock:
            self._record(context)
        for request in request_iterator:
            if request.account_id in self.open_unavailable:
                yield wallet_pb2.OpenAccountResult(account_id=request.account_id, status="unavailable")
                continue
            with self.lock:
                self.open_requests.append(("stream", request))
            yield wallet_pb2.OpenAccountResult(
                account_id=request.account_id, status="success", account=opened_account(request)
            )


def opened_account(request: wallet_pb2.OpenAccountRequest) -> wallet_pb2.Account:
    """The account ``request`` opens, as a node answers it: zero balance, ACTIVE, with the
    request's reference and metadata."""
    return wallet_pb2.Account(
        account_id=request.account_id,
        currency=request.currency,
        allow_negative_balance=request.allow_negative_balance,
        balance="0.00",
        status=wallet_pb2.ACCOUNT_STATUS_ACTIVE,
        reference=request.reference,
        metadata=dict(request.metadata),
    )
