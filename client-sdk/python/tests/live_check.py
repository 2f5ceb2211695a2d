"""Checks against a live cluster (run by client-sdk/test-sdks.sh): bad input gets the
documented code, reason and field violation, decodable with grpcio-status, and changes
nothing; the retry loop gets past a dead node and gives up, bounded, when all are dead.

    PYTHONPATH=src python tests/live_check.py --write HOST:PORT,... --read HOST:PORT
"""

from __future__ import annotations

import argparse
import time
import uuid

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from wallet.v1 import wallet_pb2, wallet_pb2_grpc
from wallet_client import (
    ERROR_DOMAIN,
    Indefinite,
    QueryClient,
    Rejected,
    RetryPolicy,
    WalletClient,
    classify,
    new_transaction_id,
)


def expect_rejected(call, code: grpc.StatusCode, reason: str, field: str | None) -> Rejected:
    try:
        call()
    except Rejected as error:
        assert (error.code, error.reason, error.field) == (code, reason, field), (
            f"expected {code.name} {reason} field={field}, got {error.code.name} "
            f"{error.reason} field={error.field}: {error.message}"
        )
        assert error.details.domain == ERROR_DOMAIN, error.details
        assert error.definite
        return error
    raise AssertionError(f"expected {code.name} {reason}, the call succeeded")


def expect_rejected_raw(call, code: grpc.StatusCode, reason: str, field: str | None) -> None:
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
        funded = wallet.transfer(new_transaction_id(), issuer, alice, "10.00", "USD")

        def pay(amount: str, transaction_id: str | None = None, to: str = alice, currency="USD"):
            tx = transaction_id or new_transaction_id()
            return lambda: wallet.transfer(tx, issuer, to, amount, currency)

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
        # NOT_FOUND and FAILED_PRECONDITION carry ErrorInfo; BadRequest is for invalid input.
        expect_rejected(pay("1.00", to=prefix + "nobody"), grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND", None)
        expect_rejected(
            lambda: wallet.transfer(new_transaction_id(), alice, issuer, "10.01", "USD"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "INSUFFICIENT_FUNDS",
            None,
        )
        expect_rejected(
            pay("9.99", transaction_id=funded.transaction_id),
            grpc.StatusCode.ALREADY_EXISTS,
            "TRANSACTION_ID_REUSED",
            None,
        )
        expect_rejected(
            lambda: wallet.open_account(alice, "EUR"),
            grpc.StatusCode.ALREADY_EXISTS,
            "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS",
            None,
        )
        checks += 8
        raw_status_decodes(writes[0], issuer, alice)
        checks += 1

        # The read node's errors decode the same way, streams included.
        def empty_watch():
            for _ in query.watch_balances([], timeout=5):
                raise AssertionError("an empty watch streamed an update")
            raise AssertionError("an empty watch was accepted")

        expect_rejected_raw(empty_watch, invalid, "INVALID_ACCOUNT_ID", "account_ids")
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
            wallet.transfer(new_transaction_id(), issuer, alice, "1.00", "USD")
            raise AssertionError("a transfer through a dead node succeeded")
        except Indefinite as error:
            assert error.code == grpc.StatusCode.UNAVAILABLE, error
            assert error.reason == "TRANSPORT_ERROR", error
            assert not error.definite
    assert time.monotonic() - started < policy.total_deadline + 1.0
    checks += 2
    print(f"python live checks: {checks} passed")


if __name__ == "__main__":
    main()
