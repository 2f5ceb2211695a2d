"""Checks against a live cluster (run by client-sdk/test-sdks.sh): bad input gets the
documented code, reason and field violation, decodable with grpcio-status, and changes
nothing; the retry loop gets past a dead node and gives up, bounded, when all are dead;
200 concurrent transfer() calls on one client (pipelined transparently, down at most one
SubmitTransfers stream per node) each get exactly their own outcome, the balances are exact,
and a retry of the same ids moves no money twice; the asyncio client does the same with 100
concurrent calls; the account lifecycle (freeze, unfreeze, overdraft limit, close) with
every refusal it documents; a transfer's reference and metadata stored and read back (write
node, read node), compared on a retry, and refused over their limits; an account's reference
and metadata likewise (set at opening, compared when it is opened again, refused over their
limits with no account opened); a multi-leg transfer (transfer_legs) moves every leg or none.

    PYTHONPATH=src python tests/live_check.py --write HOST:PORT,... --read HOST:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import time
import uuid
from concurrent import futures
from decimal import Decimal
from typing import Any, Callable, Optional, Union

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from wallet_ledger import (
    ERROR_DOMAIN,
    AsyncQueryClient,
    AsyncWalletClient,
    Indefinite,
    Leg,
    QueryClient,
    Rejected,
    RetryPolicy,
    WalletClient,
    classify,
    new_transaction_id,
    query_pb2,
    wallet_pb2,
    wallet_pb2_grpc,
)


def expect_rejected(
    call: Callable[[], object], code: grpc.StatusCode, reason: str, field: Optional[str], *fields: Optional[str]
) -> Rejected:
    """``call`` fails with ``code`` and ``reason``, naming ``field`` (or one of ``fields``)."""
    try:
        call()
    except Rejected as error:
        assert (error.code, error.reason) == (code, reason) and error.field in (field, *fields), (
            f"expected {code.name} {reason} field={field}, got {error.code.name} "
            f"{error.reason} field={error.field}: {error.message}"
        )
        assert error.details.domain == ERROR_DOMAIN, error.details
        assert error.definite
        return error
    raise AssertionError(f"expected {code.name} {reason}, the call succeeded")


def expect_rejected_raw(call: Callable[[], object], code: grpc.StatusCode, reason: str, field: Optional[str]) -> None:
    """For calls that raise grpcio's own RpcError (streams): decoded with `classify`."""
    try:
        call()
    except grpc.RpcError as error:
        expect_rejected(lambda: _raise(classify(error)), code, reason, field)
        return
    raise AssertionError(f"expected {code.name} {reason}, the call succeeded")


def _raise(error: Exception) -> None:
    raise error


def raw_status_decodes(write: str, issuer: str, alice: str) -> None:
    """Straight from the generated stub and grpcio-status, without the SDK's helpers."""
    stub = wallet_pb2_grpc.WalletServiceStub(grpc.insecure_channel(write))
    request = wallet_pb2.TransferRequest(
        transaction_id=new_transaction_id(),
        from_account=issuer,
        to_account=alice,
        amount="abc",
        currency="USD",
    )
    try:
        stub.Transfer(request, timeout=5)
    except grpc.RpcError as error:
        status = rpc_status.from_call(error)
        assert status is not None, "no grpc-status-details-bin trailer"
        assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], status
        found = {}
        for detail in status.details:
            for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
                if detail.Is(kind.DESCRIPTOR):
                    message = kind()
                    detail.Unpack(message)
                    found[kind.__name__] = message
        assert found["ErrorInfo"].reason == "INVALID_AMOUNT", found
        assert found["ErrorInfo"].domain == ERROR_DOMAIN, found
        violations = [v.field for v in found["BadRequest"].field_violations]
        assert violations == ["amount"], violations
        return
    raise AssertionError("amount 'abc' was accepted")


Outcome = Union[wallet_pb2.TransferResponse, Exception]


def _outcome(call: Callable[[], wallet_pb2.TransferResponse]) -> Outcome:
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - compared below
        return error


#: The field a rejection names, the same down a stream (``TransferError.field``) and through
#: the unary path (a ``BadRequest`` violation): for INVALID_ARGUMENT and NOT_FOUND only.
FIELD = {"INVALID_AMOUNT": "amount", "INSUFFICIENT_FUNDS": None, "TRANSACTION_ID_REUSED": None}


def expect_transfer_rejected(
    wallet: WalletClient, call: Callable[[], object], code: grpc.StatusCode, reason: str
) -> None:
    """A rejected transfer names its field (the same whichever path the call took)."""
    try:
        call()
    except Rejected as error:
        expect_rejected(lambda: _raise(error), code, reason, FIELD[reason])
        return
    raise AssertionError(f"expected {code.name} {reason}, the call succeeded")


def concurrent_transfers(writes: list[str], prefix: str) -> int:
    """200 concurrent transfer() calls on one client from a thread pool: valid ones, invalid
    amounts, insufficient funds, replays of earlier ids (same parameters: the original
    outcome) and reuses of them (other parameters: TRANSACTION_ID_REUSED). Each call gets
    exactly its own outcome, the balances are exact, the calls went down at most one
    SubmitTransfers stream per node, and sending all 200 again moves no money twice."""
    issuer = prefix + "pipe-issuer"
    payers = [f"{prefix}pipe-payer-{j}" for j in range(4)]
    payees = [f"{prefix}pipe-payee-{j}" for j in range(4)]
    expected: dict[str, Decimal] = {account: Decimal("0.00") for account in payers + payees}
    with WalletClient(writes) as wallet:
        wallet.open_account(issuer, "USD", allow_negative_balance=True)
        for account in payers + payees:
            wallet.open_account(account, "USD")
        for payer in payers:
            wallet.transfer(
                transaction_id=new_transaction_id(), from_account=issuer, to_account=payer, amount="50.00", currency="USD"
            )
            expected[payer] += Decimal("50.00")
        earlier: list[tuple[str, str]] = []  # (transaction_id, consistency_token), to payees[0]
        for _ in range(10):
            tx = new_transaction_id()
            done = wallet.transfer(
                transaction_id=tx, from_account=issuer, to_account=payees[0], amount="2.00", currency="USD"
            )
            earlier.append((tx, done.consistency_token))
            expected[payees[0]] += Decimal("2.00")

        # (request fields, expected: "success", a reason, or ("replay", token))
        cases: list[tuple[dict[str, str], Any]] = []
        for i in range(200):
            j, kind = i % 4, i % 5
            if kind == 0:
                request = dict(from_account=issuer, to_account=payees[j], amount="1.00")
                expected[payees[j]] += Decimal("1.00")
                cases.append((request, "success"))
            elif kind == 1:
                cases.append((dict(from_account=issuer, to_account=payees[j], amount="1.005"), "INVALID_AMOUNT"))
            elif kind == 2:
                request = dict(from_account=payers[j], to_account=payees[j], amount="100.00")
                cases.append((request, "INSUFFICIENT_FUNDS"))
            elif kind == 3:
                request = dict(from_account=payers[j], to_account=payees[j], amount="0.50")
                expected[payers[j]] -= Decimal("0.50")
                expected[payees[j]] += Decimal("0.50")
                cases.append((request, "success"))
            else:
                tx, token = earlier[(i // 5) % 10]
                same = (i // 5) % 2 == 0
                request = dict(
                    transaction_id=tx, from_account=issuer, to_account=payees[0], amount="2.00" if same else "3.00"
                )
                cases.append((request, ("replay", token) if same else "TRANSACTION_ID_REUSED"))
        requests = [
            {"transaction_id": new_transaction_id(), "currency": "USD", **request} for request, _ in cases
        ]

        def run_all() -> list[Outcome]:
            with futures.ThreadPoolExecutor(max_workers=32) as pool:
                calls = [pool.submit(_outcome, lambda r=r: wallet.transfer(**r)) for r in requests]
                return [call.result() for call in calls]

        before = wallet.pipeline_stats()
        first = run_all()
        stats = wallet.pipeline_stats()
        fallbacks = stats.unary_transfers - before.unary_transfers
        tokens: dict[str, str] = {}
        for request, (_, want), got in zip(requests, cases, first):
            where = f"{request} expected {want}, got {got!r}"
            if want == "success" or isinstance(want, tuple):
                assert isinstance(got, wallet_pb2.TransferResponse), where
                assert got.status == "success" and got.transaction_id == request["transaction_id"], where
                if isinstance(want, tuple):
                    assert got.consistency_token == want[1], where  # the original outcome
                tokens[request["transaction_id"]] = got.consistency_token
            else:
                assert isinstance(got, Rejected), where
                assert got.reason == want and got.definite, where
                assert got.field == FIELD[want], f"{where}: field {got.field!r}, not {FIELD[want]!r}"
        sent = stats.transfers - before.transfers
        # Every call went down a stream (a fallback comes on top of that), and at most one
        # stream per node was ever opened: the leaders were known, so none ended.
        assert sent == 200, f"not every call went down a stream: {stats}"
        assert 1 <= stats.streams <= len(writes), f"more than one stream per node: {stats}"
        print(
            f"python live checks: 200 concurrent transfers: all down {stats.streams} SubmitTransfers "
            f"stream(s) ({len(writes)} nodes), {fallbacks} went on unary"
        )

        def check_balances() -> None:
            for account, want in expected.items():
                got = wallet.get_account(account).account.balance
                assert Decimal(got) == want, f"{account}: {got} != {want}"

        check_balances()
        # Everything again, with the same ids: the same outcomes, and no money moves twice.
        again = run_all()
        for request, got, earlier_outcome in zip(requests, again, first):
            if isinstance(earlier_outcome, wallet_pb2.TransferResponse):
                assert isinstance(got, wallet_pb2.TransferResponse), (request, got)
                assert got.consistency_token == tokens[request["transaction_id"]], (request, got)
            else:
                assert isinstance(got, Rejected) and isinstance(earlier_outcome, Rejected), (request, got)
                assert got.reason == earlier_outcome.reason, (request, got, earlier_outcome)
        check_balances()
        stats = wallet.pipeline_stats()
        assert stats.transfers - before.transfers == 400 and stats.streams <= len(writes), stats
    return 3


async def async_transfers(writes: list[str], read: str, prefix: str) -> int:
    """The asyncio client: 100 concurrent transfers (valid and insufficient funds) share one
    stream, each gets its own outcome, the balance is exact, and a retry moves nothing."""
    issuer, payer, payee = prefix + "aio-issuer", prefix + "aio-payer", prefix + "aio-payee"
    async with AsyncWalletClient(writes) as wallet, AsyncQueryClient([read]) as query:
        await wallet.open_account(issuer, "USD", allow_negative_balance=True)
        await wallet.open_account(payer, "USD")
        await wallet.open_account(payee, "USD")
        funded = await wallet.transfer(
            transaction_id=new_transaction_id(), from_account=issuer, to_account=payer, amount="10.00", currency="USD"
        )
        requests: list[dict[str, Any]] = [
            dict(
                transaction_id=new_transaction_id(),
                from_account=payer,
                to_account=payee,
                amount="0.10" if i % 2 == 0 else "20.00",
                currency="USD",
            )
            for i in range(100)
        ]
        for attempt in range(2):  # the second time: the same ids, the same outcomes
            outcomes = await asyncio.gather(*(wallet.transfer(**r) for r in requests), return_exceptions=True)
            for i, outcome in enumerate(outcomes):
                if i % 2 == 0:
                    assert isinstance(outcome, wallet_pb2.TransferResponse), (attempt, i, outcome)
                else:
                    assert isinstance(outcome, Rejected) and outcome.reason == "INSUFFICIENT_FUNDS", (attempt, i, outcome)
            balance = (await wallet.get_account(payee)).account.balance
            assert balance == "5.00", balance
        stats = wallet.pipeline_stats()
        assert stats.transfers == 201 and 1 <= stats.streams <= len(writes), stats
        print(
            f"python live checks: asyncio: {stats.transfers} transfers down {stats.streams} SubmitTransfers "
            f"stream(s), {stats.unary_transfers} went on unary"
        )
        projected = (await query.get_balance(payer, funded.consistency_token)).balance.balance
        assert projected in ("10.00", "5.00"), projected  # the token is the funding's
    return 2


def close_when_settled(wallet: WalletClient, account_id: str) -> wallet_pb2.Account:
    """``close_account``, called again while the node answers ACCOUNT_HAS_TRANSFERS_IN_FLIGHT
    (a cross-partition transfer from the account answered "success" before its settle step:
    "retry shortly", as documented)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return wallet.close_account(account_id)
        except Rejected as error:
            if error.reason != "ACCOUNT_HAS_TRANSFERS_IN_FLIGHT" or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def account_lifecycle(writes: list[str], prefix: str) -> int:
    """Freeze, unfreeze, overdraft limit and close on a fresh account, each refusal with its
    documented code and reason (FAILED_PRECONDITION carries no field violation), the status
    and limit read back; then the asyncio client's four calls on an empty account."""
    issuer, account, sink = prefix + "life-issuer", prefix + "life-account", prefix + "life-sink"
    precondition = grpc.StatusCode.FAILED_PRECONDITION
    with WalletClient(writes) as wallet:
        wallet.open_account(issuer, "USD", allow_negative_balance=True)
        opened = wallet.open_account(account, "USD")
        assert (opened.status, opened.overdraft_limit) == (wallet_pb2.ACCOUNT_STATUS_ACTIVE, "0.00"), opened
        wallet.open_account(sink, "USD")

        def move(source: str, target: str, amount: str) -> Callable[[], wallet_pb2.TransferResponse]:
            tx = new_transaction_id()
            return lambda: wallet.transfer(
                transaction_id=tx, from_account=source, to_account=target, amount=amount, currency="USD"
            )

        def state() -> tuple[int, str, str]:
            got = wallet.get_account(account).account
            return got.status, got.balance, got.overdraft_limit

        move(issuer, account, "20.00")()

        frozen = wallet.freeze_account(account)
        assert (frozen.account_id, frozen.status) == (account, wallet_pb2.ACCOUNT_STATUS_FROZEN), frozen
        assert wallet.freeze_account(account).status == wallet_pb2.ACCOUNT_STATUS_FROZEN  # idempotent
        expect_rejected(move(account, sink, "5.00"), precondition, "ACCOUNT_FROZEN", None)
        expect_rejected(move(issuer, account, "5.00"), precondition, "ACCOUNT_FROZEN", None)
        assert state() == (wallet_pb2.ACCOUNT_STATUS_FROZEN, "20.00", "0.00"), state()

        assert wallet.unfreeze_account(account).status == wallet_pb2.ACCOUNT_STATUS_ACTIVE
        assert move(account, sink, "5.00")().status == "success"

        limited = wallet.set_overdraft_limit(account, "50.00", "USD")
        assert (limited.overdraft_limit, limited.status) == ("50.00", wallet_pb2.ACCOUNT_STATUS_ACTIVE), limited
        assert wallet.set_overdraft_limit(account, "50.00", "USD").overdraft_limit == "50.00"  # idempotent
        expect_rejected(
            lambda: wallet.set_overdraft_limit(account, "50.00", "EUR"), precondition, "CURRENCY_MISMATCH", None
        )
        expect_rejected(
            lambda: wallet.set_overdraft_limit(issuer, "50.00", "USD"), precondition, "OVERDRAFT_UNLIMITED", None
        )
        move(account, sink, "60.00")()  # 15.00 - 60.00: 45.00 below zero, within the limit
        expect_rejected(move(account, sink, "5.01"), precondition, "INSUFFICIENT_FUNDS", None)
        assert state() == (wallet_pb2.ACCOUNT_STATUS_ACTIVE, "-45.00", "50.00"), state()

        expect_rejected(lambda: wallet.close_account(account), precondition, "ACCOUNT_NOT_EMPTY", None)
        move(issuer, account, "45.00")()
        closed = close_when_settled(wallet, account)
        assert (closed.status, closed.balance) == (wallet_pb2.ACCOUNT_STATUS_CLOSED, "0.00"), closed
        assert wallet.close_account(account).status == wallet_pb2.ACCOUNT_STATUS_CLOSED  # idempotent
        assert state()[0] == wallet_pb2.ACCOUNT_STATUS_CLOSED, state()
        expect_rejected(move(issuer, account, "1.00"), precondition, "ACCOUNT_CLOSED", None)
        expect_rejected(move(account, sink, "1.00"), precondition, "ACCOUNT_CLOSED", None)
        expect_rejected(lambda: wallet.unfreeze_account(account), precondition, "ACCOUNT_CLOSED", None)
        expect_rejected(
            lambda: wallet.freeze_account(prefix + "nobody"), grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND", "account_id"
        )
        assert wallet.get_account(sink).account.balance == "65.00"

    async def asynchronously() -> None:
        empty = prefix + "life-aio"
        async with AsyncWalletClient(writes) as wallet:
            await wallet.open_account(empty, "USD")
            assert (await wallet.freeze_account(empty)).status == wallet_pb2.ACCOUNT_STATUS_FROZEN
            assert (await wallet.unfreeze_account(empty)).status == wallet_pb2.ACCOUNT_STATUS_ACTIVE
            assert (await wallet.set_overdraft_limit(empty, "7.5", "USD")).overdraft_limit == "7.50"
            assert (await wallet.close_account(empty)).status == wallet_pb2.ACCOUNT_STATUS_CLOSED

    asyncio.run(asynchronously())
    print("python live checks: account lifecycle: freeze, unfreeze, overdraft limit and close as documented")
    return 12


def transfer_annotations(writes: list[str], read: str, prefix: str) -> int:
    """A transfer with a reference and metadata (unicode included) reads back the same from
    GetTransfer (write node), WatchTransfer and ListTransfers (read node); a retry with the
    same id and parameters answers the original outcome (replayed), with other metadata it is
    ALREADY_EXISTS TRANSACTION_ID_REUSED; 17 metadata entries are INVALID_METADATA and a
    129-byte reference INVALID_REFERENCE (INVALID_ARGUMENT, naming the field), both down the
    pipelined stream and through the unary path; a hold keeps its reference and metadata."""
    payer, payee = prefix + "ann-payer", prefix + "ann-payee"
    reference = f"order-{uuid.uuid4()}"
    metadata = {"channel": "sdk-python", "note": "ünïcode ✓"}
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    checks = 0
    with WalletClient(writes) as wallet, QueryClient([read]) as query:
        wallet.open_account(payer, "USD", allow_negative_balance=True)
        wallet.open_account(payee, "USD")
        tx = new_transaction_id()

        def send(metadata: dict[str, str], transaction_id: str = tx, ref: str = reference) -> wallet_pb2.TransferResponse:
            return wallet.transfer(
                transaction_id=transaction_id, from_account=payer, to_account=payee, amount="3.00", currency="USD",
                reference=ref, metadata=metadata,
            )

        done = send(metadata)
        assert done.status == "success" and not done.replayed, done
        got = wallet.get_transfer(tx)
        assert (got.reference, dict(got.metadata)) == (reference, metadata), got
        # COMPLETED, or for a few milliseconds IN_FLIGHT when the accounts' partitions differ.
        assert got.status in (wallet_pb2.TRANSFER_STATUS_COMPLETED, wallet_pb2.TRANSFER_STATUS_IN_FLIGHT), got
        assert send(dict(metadata)).replayed  # the same request again: the original outcome
        checks += 3
        expect_transfer_rejected(
            wallet, lambda: send({**metadata, "note": "changed"}), grpc.StatusCode.ALREADY_EXISTS, "TRANSACTION_ID_REUSED"
        )
        expect_transfer_rejected(
            wallet, lambda: send(metadata, ref=reference + "-other"), grpc.StatusCode.ALREADY_EXISTS, "TRANSACTION_ID_REUSED"
        )
        checks += 2

        too_many = {f"k{i}": "v" for i in range(17)}
        long_reference = "r" * 129
        with WalletClient(writes, pipeline_transfers=False) as unary:
            for client in (wallet, unary):
                expect_rejected(
                    lambda: client.transfer(
                        transaction_id=new_transaction_id(), from_account=payer, to_account=payee, amount="1.00",
                        currency="USD", metadata=too_many,
                    ),
                    invalid, "INVALID_METADATA", "metadata",
                )
                expect_rejected(
                    lambda: client.transfer(
                        transaction_id=new_transaction_id(), from_account=payer, to_account=payee, amount="1.00",
                        currency="USD", reference=long_reference,
                    ),
                    invalid, "INVALID_REFERENCE", "reference",
                )
                checks += 2
        expect_rejected(
            lambda: wallet.authorize_transfer(
                transaction_id=new_transaction_id(), from_account=payer, to_account=payee, amount="1.00",
                currency="USD", timeout=datetime.timedelta(minutes=1), metadata={"bad key": "v"},
            ),
            invalid, "INVALID_METADATA", "metadata",
        )
        hold_tx = new_transaction_id()
        held = wallet.authorize_transfer(
            transaction_id=hold_tx, from_account=payer, to_account=payee, amount="1.00", currency="USD",
            timeout=datetime.timedelta(minutes=1), reference=reference + "-hold", metadata={"channel": "sdk-python"},
        )
        assert (held.transfer.reference, dict(held.transfer.metadata)) == (reference + "-hold", {"channel": "sdk-python"}), held
        got = wallet.get_transfer(hold_tx)
        assert (got.reference, dict(got.metadata)) == (reference + "-hold", {"channel": "sdk-python"}), got
        wallet.void_transfer(transaction_id=hold_tx, from_account=payer)
        checks += 2

        # The read node: the transfer's final update, then the payer's history.
        final = list(query.watch_transfer(tx, timeout=30))[-1]
        assert final.status == wallet_pb2.TRANSFER_STATUS_COMPLETED, final
        assert (final.reference, dict(final.metadata)) == (reference, metadata), final
        query.get_balance(payer, done.consistency_token)
        entry = next(e for e in query.iter_transfers(payer) if e.transaction_id == tx)
        assert (entry.reference, dict(entry.metadata)) == (reference, metadata), entry
        checks += 2
    print("python live checks: a transfer's reference and metadata stored, read back, compared on a retry, refused over their limits")
    return checks


def account_annotations(writes: list[str], read: str, prefix: str) -> int:
    """A fresh account opened with a reference and metadata carries them in the answer and in
    GetAccount (write node); opening it again with the same parameters answers the account
    (also through the asyncio client and OpenAccounts), with other metadata or another
    reference it is ALREADY_EXISTS ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS and nothing changes; a
    129-byte reference is INVALID_REFERENCE and 17 metadata entries INVALID_METADATA
    (INVALID_ARGUMENT, naming the field), and that account then does not exist; the read
    node's GetBalance (at the consistency token of a transfer into the account) and the
    snapshot of WatchBalances carry the reference and metadata too."""
    suffix = uuid.uuid4().hex[:8]
    account, issuer = f"{prefix}acct-ann-{suffix}", f"{prefix}acct-ann-issuer-{suffix}"
    reference, metadata = "cust-42", {"tier": "gold", "region": "eu"}
    invalid, exists = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS
    checks = 0

    def reference_and_metadata(message: Union[wallet_pb2.Account, query_pb2.Balance]) -> tuple[str, dict[str, str]]:
        return message.reference, dict(message.metadata)

    with WalletClient(writes) as wallet, QueryClient([read]) as query:
        opened = wallet.open_account(account, "USD", reference=reference, metadata=metadata)
        assert (opened.account_id, opened.currency) == (account, "USD"), opened
        assert reference_and_metadata(opened) == (reference, metadata), opened
        got = wallet.get_account(account).account
        assert reference_and_metadata(got) == (reference, metadata), got
        again = wallet.open_account(account, "USD", reference=reference, metadata=dict(metadata))
        assert (again.account_id, *reference_and_metadata(again)) == (account, reference, metadata), again
        checks += 3

        def reopen(**changed: Any) -> Callable[[], wallet_pb2.Account]:
            fields: dict[str, Any] = {"reference": reference, "metadata": metadata, **changed}
            return lambda: wallet.open_account(account, "USD", **fields)

        expect_rejected(reopen(metadata={"tier": "silver"}), exists, "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS", None)
        expect_rejected(reopen(reference="cust-43"), exists, "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS", None)
        expect_rejected(reopen(reference=None, metadata=None), exists, "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS", None)
        got = wallet.get_account(account).account
        assert reference_and_metadata(got) == (reference, metadata), f"a refused reopening changed the account: {got}"
        checks += 4

        fresh = f"{prefix}acct-ann-refused-{suffix}"
        expect_rejected(
            lambda: wallet.open_account(fresh, "USD", reference="r" * 129), invalid, "INVALID_REFERENCE", "reference"
        )
        too_many = {f"k{i}": "v" for i in range(17)}
        expect_rejected(
            lambda: wallet.open_account(fresh, "USD", metadata=too_many), invalid, "INVALID_METADATA", "metadata"
        )
        expect_rejected(
            lambda: wallet.get_account(fresh), grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND", "account_id"
        )
        checks += 3

        # OpenAccounts: an item with annotations opens with them, an existing account given
        # the same ones answers it, given others it is refused like the unary call.
        bulk = f"{prefix}acct-ann-bulk-{suffix}"
        outcomes = wallet.open_accounts([
            dict(account_id=bulk, currency="USD", reference="cust-44", metadata={"tier": "bronze"}),
            dict(account_id=account, currency="USD", reference=reference, metadata=metadata),
        ])
        first, second = outcomes
        assert isinstance(first, wallet_pb2.Account), first
        assert reference_and_metadata(first) == ("cust-44", {"tier": "bronze"}), first
        assert isinstance(second, wallet_pb2.Account), second
        assert reference_and_metadata(second) == (reference, metadata), second
        (refused,) = wallet.open_accounts([dict(account_id=bulk, currency="USD", reference="cust-45")])
        assert isinstance(refused, Rejected), refused
        assert (refused.code, refused.reason) == (exists, "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS"), refused
        checks += 2

        # The read node: GetBalance at least as fresh as a transfer into the account, and the
        # snapshot a watch of it starts with.
        wallet.open_account(issuer, "USD", allow_negative_balance=True)
        funded = wallet.transfer(
            transaction_id=new_transaction_id(), from_account=issuer, to_account=account, amount="1.00", currency="USD"
        )
        projected = query.get_balance(account, funded.consistency_token).balance
        assert (projected.account_id, projected.balance) == (account, "1.00"), projected
        assert reference_and_metadata(projected) == (reference, metadata), projected
        unannotated = query.get_balance(issuer, funded.consistency_token).balance
        assert reference_and_metadata(unannotated) == ("", {}), unannotated
        watch = query.watch_balances([account], timeout=30)
        try:
            snapshot = next(iter(watch))
        finally:
            watch.cancel()
        assert snapshot.balance.account_id == account, snapshot
        assert reference_and_metadata(snapshot.balance) == (reference, metadata), snapshot
        checks += 3

    async def asynchronously() -> None:
        async with AsyncWalletClient(writes) as wallet:
            again = await wallet.open_account(account, "USD", reference=reference, metadata=metadata)
            assert reference_and_metadata(again) == (reference, metadata), again
            try:
                await wallet.open_account(account, "USD", reference=reference, metadata={"tier": "silver"})
            except Rejected as error:
                assert (error.code, error.reason) == (exists, "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS"), error
            else:
                raise AssertionError("reopening with other metadata succeeded (asyncio)")

    asyncio.run(asynchronously())
    checks += 2
    print("python live checks: an account's reference and metadata set at opening, read back, compared on reopening, refused over their limits")
    return checks


#: Accounts of the multi-leg check, fixed so that the first four are in one partition of the
#: 4 of client-sdk/test-sdks.sh's cluster (the server's partition function) and the last in
#: another; opened idempotently, so the check compares balances as deltas.
LEGS_ACCOUNTS = ("py-legs-0", "py-legs-2", "py-legs-7", "py-legs-12")
LEGS_ELSEWHERE = "py-legs-3"


def transfer_legs(writes: list[str], issuer: str) -> int:
    """A multi-leg transfer moves every leg or none: three legs among four accounts of one
    partition move exactly their amounts (GetAccount on the write node, as deltas); the same
    id and legs again answer the original outcome (replayed) and move nothing, other legs
    under the id are ALREADY_EXISTS TRANSACTION_ID_REUSED; a set taking more than its first
    account has is FAILED_PRECONDITION INSUFFICIENT_FUNDS naming leg 0 and moves nothing; a
    repeated leg, mixed currencies and no legs are INVALID_ARGUMENT (REPEATED_LEG,
    MIXED_CURRENCIES, LEGS_OUT_OF_RANGE); a set reaching another partition (first -> second
    and first -> LEGS_ELSEWHERE) completes too, "success" and not replayed, and moves exactly
    its amounts in both partitions (LEGS_ELSEWHERE read on its own), and the same id and legs
    again answer replayed and move nothing; GetTransfer answers the set with its legs,
    COMPLETED, no from_account; the asyncio client replays it too."""
    first, second, third, fourth = LEGS_ACCOUNTS
    precondition, invalid = grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT
    reference, metadata = f"legs-{uuid.uuid4()}", {"channel": "sdk-python"}
    checks = 0
    with WalletClient(writes) as wallet:
        for account in (*LEGS_ACCOUNTS, LEGS_ELSEWHERE):
            wallet.open_account(account, "USD")
        wallet.transfer(
            transaction_id=new_transaction_id(), from_account=issuer, to_account=first, amount="100.00", currency="USD"
        )

        def balances() -> list[Decimal]:
            return [Decimal(wallet.get_account(account).account.balance) for account in LEGS_ACCOUNTS]

        def moved(since: list[Decimal]) -> list[Decimal]:
            return [now - then for now, then in zip(balances(), since)]

        nothing = [Decimal("0")] * 4
        legs = [Leg(first, second, "30.00", "USD"), Leg(first, third, "20.00", "USD"), Leg(second, fourth, "10.00", "USD")]
        before = balances()
        tx = new_transaction_id()
        done = wallet.transfer_legs(legs, transaction_id=tx, reference=reference, metadata=metadata)
        assert (done.status, done.transaction_id, done.replayed) == ("success", tx, False), done
        expected = [Decimal("-50.00"), Decimal("20.00"), Decimal("20.00"), Decimal("10.00")]
        assert moved(before) == expected, f"the legs moved {moved(before)}, not {expected}"
        checks += 2

        after = balances()
        again = wallet.transfer_legs(list(legs), transaction_id=tx, reference=reference, metadata=dict(metadata))
        assert (again.status, again.transaction_id, again.replayed) == ("success", tx, True), again
        assert again.consistency_token == done.consistency_token, (again, done)
        other = expect_rejected(
            lambda: wallet.transfer_legs(legs[:2], transaction_id=tx, reference=reference, metadata=metadata),
            grpc.StatusCode.ALREADY_EXISTS, "TRANSACTION_ID_REUSED", None,
        )
        assert other.transaction_id == tx, other.transaction_id
        assert moved(after) == nothing, f"a replay or a reused id moved {moved(after)}"
        checks += 3

        too_much = str(after[0] + Decimal("1000.00"))
        refused = expect_rejected(
            lambda: wallet.transfer_legs([Leg(first, second, too_much, "USD"), Leg(second, fourth, "1.00", "USD")]),
            precondition, "INSUFFICIENT_FUNDS", None,
        )
        assert refused.details.metadata.get("leg") == "0" and refused.leg == 0, refused.details
        assert refused.transaction_id is not None and uuid.UUID(refused.transaction_id).version == 4, refused.transaction_id
        checks += 1
        expect_rejected(
            lambda: wallet.transfer_legs([Leg(first, second, "1.00", "USD"), Leg(first, second, "2.00", "USD")]),
            invalid, "REPEATED_LEG", "legs",
        )
        expect_rejected(
            lambda: wallet.transfer_legs([Leg(first, second, "1.00", "USD"), Leg(first, third, "1.00", "EUR")]),
            invalid, "MIXED_CURRENCIES", "legs",
        )
        expect_rejected(lambda: wallet.transfer_legs([]), invalid, "LEGS_OUT_OF_RANGE", "legs")
        assert moved(after) == nothing, f"a refused set moved {moved(after)}"
        checks += 4

        def elsewhere() -> Decimal:
            return Decimal(wallet.get_account(LEGS_ELSEWHERE).account.balance)

        # Across partitions: the consistency token names a position in every partition the set
        # touches, so a retry's may differ from the first answer's.
        across_legs = [Leg(first, second, "1.00", "USD"), Leg(first, LEGS_ELSEWHERE, "1.00", "USD")]
        across_before, elsewhere_before = balances(), elsewhere()
        across_tx = new_transaction_id()
        across = wallet.transfer_legs(across_legs, transaction_id=across_tx)
        assert (across.status, across.transaction_id, across.replayed) == ("success", across_tx, False), across
        expected = [Decimal("-2.00"), Decimal("1.00"), Decimal("0"), Decimal("0")]
        assert moved(across_before) == expected, f"the legs across partitions moved {moved(across_before)}, not {expected}"
        elsewhere_moved = elsewhere() - elsewhere_before
        assert elsewhere_moved == Decimal("1.00"), f"the legs across partitions moved {elsewhere_moved} to {LEGS_ELSEWHERE}"
        checks += 2

        across_after, elsewhere_after = balances(), elsewhere()
        across_again = wallet.transfer_legs(list(across_legs), transaction_id=across_tx)
        assert (across_again.status, across_again.transaction_id, across_again.replayed) == (
            "success", across_tx, True
        ), across_again
        assert moved(across_after) == nothing, f"a replay across partitions moved {moved(across_after)}"
        elsewhere_moved = elsewhere() - elsewhere_after
        assert elsewhere_moved == 0, f"a replay across partitions moved {elsewhere_moved} to {LEGS_ELSEWHERE}"
        checks += 2

        got = wallet.get_transfer(tx)
        assert got.status == wallet_pb2.TRANSFER_STATUS_COMPLETED, got
        assert (got.transaction_id, got.from_account, got.to_account, got.amount) == (tx, "", "", ""), got
        assert got.currency == "USD", got
        got_legs = [(leg.from_account, leg.to_account, Decimal(leg.amount)) for leg in got.legs]
        assert got_legs == [(leg.from_account, leg.to_account, Decimal(leg.amount)) for leg in legs], got
        assert (got.reference, dict(got.metadata)) == (reference, metadata), got
        assert not got.HasField("rejected_leg"), got
        checks += 1

    async def asynchronously() -> wallet_pb2.TransferResponse:
        async with AsyncWalletClient(writes) as wallet:
            return await wallet.transfer_legs(legs, transaction_id=tx, reference=reference, metadata=metadata)

    replayed = asyncio.run(asynchronously())
    assert (replayed.transaction_id, replayed.replayed) == (tx, True), replayed
    checks += 1
    print("python live checks: a multi-leg transfer moves every leg or none, within and across partitions (replayed, refused as documented, read back)")
    return checks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", required=True)
    parser.add_argument("--read", required=True)
    args = parser.parse_args()
    writes = args.write.split(",")
    prefix = f"pycheck-{uuid.uuid4().hex[:8]}-"
    issuer, alice = prefix + "issuer", prefix + "alice"
    checks = 0

    with WalletClient(writes) as wallet, QueryClient([args.read]) as query:
        wallet.open_account(issuer, "USD", allow_negative_balance=True)
        wallet.open_account(alice, "USD")
        funded = wallet.transfer(
            transaction_id=new_transaction_id(), from_account=issuer, to_account=alice, amount="10.00", currency="USD"
        )

        def pay(
            amount: str, transaction_id: Optional[str] = None, to: str = alice, currency: str = "USD"
        ) -> Callable[[], wallet_pb2.TransferResponse]:
            tx = transaction_id or new_transaction_id()
            return lambda: wallet.transfer(
                transaction_id=tx, from_account=issuer, to_account=to, amount=amount, currency=currency
            )

        invalid = grpc.StatusCode.INVALID_ARGUMENT
        for amount in ("abc", "-1", "0", "1.005", "1e3", " 1.00", "NaN"):
            expect_rejected(pay(amount), invalid, "INVALID_AMOUNT", "amount")
            checks += 1
        expect_rejected(pay("1.00", currency="XYZ"), invalid, "UNKNOWN_CURRENCY", "currency")
        expect_rejected(pay("1.00", transaction_id="not-a-uuid"), invalid, "INVALID_TRANSACTION_ID", "transaction_id")
        expect_rejected(pay("1.00", to=issuer), invalid, "SAME_ACCOUNT", "to_account")
        expect_rejected(
            lambda: wallet.open_account("has space", "USD"), invalid, "INVALID_ACCOUNT_ID", "account_id"
        )
        # NOT_FOUND names the field too (a BadRequest violation on the unary status, the
        # TransferError's field down a stream): the same error both ways.
        expect_rejected(pay("1.00", to=prefix + "nobody"), grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND", "to_account")
        expect_rejected(
            lambda: wallet.transfer(
                transaction_id=new_transaction_id(),
                from_account=prefix + "nobody",
                to_account=alice,
                amount="1.00",
                currency="USD",
            ),
            grpc.StatusCode.NOT_FOUND,
            "ACCOUNT_NOT_FOUND",
            "from_account",
        )
        expect_rejected(
            lambda: wallet.get_account(prefix + "nobody"), grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND", "account_id"
        )
        expect_rejected(
            lambda: wallet.get_transfer(new_transaction_id()), grpc.StatusCode.NOT_FOUND, "TRANSFER_NOT_FOUND", "transaction_id"
        )
        with WalletClient(writes, pipeline_transfers=False) as unary:
            expect_rejected(
                lambda: unary.transfer(
                    transaction_id=new_transaction_id(),
                    from_account=issuer,
                    to_account=prefix + "nobody",
                    amount="1.00",
                    currency="USD",
                ),
                grpc.StatusCode.NOT_FOUND,
                "ACCOUNT_NOT_FOUND",
                "to_account",
            )
            stats = unary.pipeline_stats()
            assert (stats.streams, stats.transfers, stats.unary_transfers) == (0, 0, 1), stats
        expect_transfer_rejected(
            wallet,
            lambda: wallet.transfer(
                transaction_id=new_transaction_id(), from_account=alice, to_account=issuer, amount="10.01", currency="USD"
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "INSUFFICIENT_FUNDS",
        )
        expect_transfer_rejected(
            wallet, pay("9.99", transaction_id=funded.transaction_id), grpc.StatusCode.ALREADY_EXISTS, "TRANSACTION_ID_REUSED"
        )
        expect_rejected(
            lambda: wallet.open_account(alice, "EUR"),
            grpc.StatusCode.ALREADY_EXISTS,
            "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS",
            None,
        )
        checks += 11
        raw_status_decodes(writes[0], issuer, alice)
        checks += 1

        # The read node's errors decode the same way, streams included.
        def empty_watch():
            for _ in query.watch_balances([], timeout=5):
                raise AssertionError("an empty watch streamed an update")
            raise AssertionError("an empty watch was accepted")

        expect_rejected(empty_watch, invalid, "INVALID_ACCOUNT_ID", "account_ids")
        expect_rejected(
            lambda: query.get_balance(alice, "garbage"), invalid, "INVALID_CONSISTENCY_TOKEN", "consistency_token"
        )
        checks += 2

        # Bad input changed nothing.
        balance = wallet.get_account(alice).account.balance
        assert balance == "10.00", balance
        projected = query.get_balance(alice, funded.consistency_token).balance.balance
        assert projected == "10.00", projected

    # A dead node first in the list: the retry loop moves on with the same request.
    dead = "127.0.0.1:1"
    with WalletClient([dead, *writes]) as wallet:
        got = wallet.get_account(alice).account.balance
        assert got == "10.00", got
    # Only dead nodes: an indefinite error, within the total deadline.
    policy = RetryPolicy(total_deadline=2.0, attempts_max=4, backoff_base=0.01, backoff_max=0.05)
    started = time.monotonic()
    with WalletClient([dead], policy) as wallet:
        try:
            wallet.transfer(
                transaction_id=new_transaction_id(), from_account=issuer, to_account=alice, amount="1.00", currency="USD"
            )
            raise AssertionError("a transfer through a dead node succeeded")
        except Indefinite as error:
            assert error.code == grpc.StatusCode.UNAVAILABLE, error
            assert error.reason == "TRANSPORT_ERROR", error
            assert not error.definite
    assert time.monotonic() - started < policy.total_deadline + 1.0
    checks += 2
    checks += transfer_legs(writes, issuer)
    checks += account_lifecycle(writes, prefix)
    checks += transfer_annotations(writes, args.read, prefix)
    checks += account_annotations(writes, args.read, prefix)
    checks += concurrent_transfers(writes, prefix)
    checks += asyncio.run(async_transfers(writes, args.read, prefix))
    print(f"python live checks: {checks} passed")


if __name__ == "__main__":
    main()
