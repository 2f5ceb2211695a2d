"""Unit tests of the reason constants generated from ``wallet.v1.ErrorReason`` and of the
``replayed`` flag on results and typed errors, against an in-process node."""

from __future__ import annotations

import asyncio
import unittest

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

import wallet_ledger
from fake_node import FakeNode, _Status, ok, rejected
from wallet_ledger import (
    REASON_NOT_LEADER,
    REASONS,
    AsyncWalletClient,
    Rejected,
    RetryPolicy,
    WalletClient,
    errors_pb2,
    item_error,
    new_transaction_id,
    reason_of,
    wallet_pb2,
)
from wallet_ledger.pipeline import result_outcome

FAST = RetryPolicy(call_timeout=2.0, total_deadline=4.0, attempts_max=3, backoff_base=0.001, backoff_max=0.004)


def abort_replayed(context: grpc.ServicerContext, code: grpc.StatusCode, reason: str) -> None:
    status = status_pb2.Status(code=code.value[0], message="no")
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="wallet.ledger", metadata={"replayed": "true"}))
    status.details.append(detail)
    context.abort_with_status(_Status(code, "no", status.SerializeToString()))


class ReasonsTest(unittest.TestCase):
    def test_every_constant_is_an_enum_reason_and_every_enum_reason_is_exposed(self) -> None:
        enum_reasons = {
            name[len("ERROR_REASON_") :]
            for name, value in errors_pb2.ErrorReason.items()
            if value != errors_pb2.ERROR_REASON_UNSPECIFIED
        }
        self.assertEqual(set(REASONS), enum_reasons)
        self.assertNotIn("UNSPECIFIED", REASONS)
        self.assertIn("INSUFFICIENT_FUNDS", REASONS)
        # Every REASON_* constant the package exposes names an enum reason, save the SDK's own.
        own = {wallet_ledger.errors.REASON_TRANSPORT, wallet_ledger.errors.REASON_DEADLINE_EXCEEDED}
        constants = {
            getattr(wallet_ledger.errors, name)
            for name in dir(wallet_ledger.errors)
            if name.startswith("REASON_") and isinstance(getattr(wallet_ledger.errors, name), str)
        }
        self.assertTrue(constants - own)
        self.assertLessEqual(constants - own, REASONS)
        self.assertEqual(REASON_NOT_LEADER, "NOT_LEADER")
        self.assertTrue(own.isdisjoint(REASONS))

    def test_reason_of(self) -> None:
        self.assertEqual(reason_of(errors_pb2.ERROR_REASON_TRANSACTION_ID_REUSED), "TRANSACTION_ID_REUSED")
        self.assertEqual(reason_of(errors_pb2.ERROR_REASON_UNSPECIFIED), "")
        self.assertEqual(reason_of(10_000), "")


class ReplayedTest(unittest.TestCase):
    def test_a_unary_rejection_says_it_replayed_from_the_error_info(self) -> None:
        def unary(request: wallet_pb2.TransferRequest, context: grpc.ServicerContext) -> wallet_pb2.TransferResponse:
            if request.amount == "9.00":
                abort_replayed(context, grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS")
            if request.amount == "8.00":
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "plain")
            return wallet_pb2.TransferResponse(status="success", transaction_id=request.transaction_id, replayed=True)

        with FakeNode(unary=unary) as node, WalletClient([node.endpoint], FAST, pipeline_transfers=False) as wallet:
            args = dict(from_account="a", to_account="b", currency="USD")
            with self.assertRaises(Rejected) as caught:
                wallet.transfer(transaction_id=new_transaction_id(), amount="9.00", **args)
            self.assertTrue(caught.exception.replayed)
            self.assertEqual(caught.exception.reason, "INSUFFICIENT_FUNDS")
            with self.assertRaises(Rejected) as fresh:
                wallet.transfer(transaction_id=new_transaction_id(), amount="8.00", **args)
            self.assertFalse(fresh.exception.replayed)
            self.assertTrue(wallet.transfer(transaction_id=new_transaction_id(), amount="1.00", **args).replayed)

    def test_pipelined_results_carry_replayed(self) -> None:
        def answer(request: wallet_pb2.TransferRequest) -> wallet_pb2.TransferResult:
            if request.amount == "poor":
                result = rejected(request, grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", "amount")
            else:
                result = ok(request)
            result.replayed = request.from_account == "again"
            return result

        from fake_node import answering

        with FakeNode(stream=answering(answer)) as node, WalletClient([node.endpoint], FAST) as wallet:

            def pay(source: str, amount: str = "1.00") -> wallet_pb2.TransferResponse:
                return wallet.transfer(
                    transaction_id=new_transaction_id(), from_account=source, to_account="b", amount=amount, currency="USD"
                )

            self.assertTrue(pay("again").replayed)
            self.assertFalse(pay("first").replayed)
            with self.assertRaises(Rejected) as caught:
                pay("again", "poor")
            self.assertTrue(caught.exception.replayed)
            with self.assertRaises(Rejected) as fresh:
                pay("first", "poor")
            self.assertFalse(fresh.exception.replayed)
            self.assertEqual(node.unary, [])

        async def run() -> None:
            with FakeNode(stream=answering(answer)) as node:
                async with AsyncWalletClient([node.endpoint], FAST) as wallet:
                    done = await wallet.transfer(
                        transaction_id=new_transaction_id(), from_account="again", to_account="b", amount="1.00", currency="USD"
                    )
                    self.assertTrue(done.replayed)
                    with self.assertRaises(Rejected) as caught:
                        await wallet.transfer(
                            transaction_id=new_transaction_id(), from_account="again", to_account="b", amount="poor", currency="USD"
                        )
                    self.assertTrue(caught.exception.replayed)

        asyncio.run(run())

    def test_items_and_results_carry_replayed(self) -> None:
        request = wallet_pb2.TransferRequest(transaction_id="x")
        result = rejected(request, grpc.StatusCode.ALREADY_EXISTS, "TRANSACTION_ID_REUSED")
        result.replayed = True
        outcome = result_outcome(request, result)
        assert isinstance(outcome, Rejected)
        self.assertTrue(outcome.replayed)
        self.assertTrue(item_error(result.status, result.error, result.replayed).replayed)
        self.assertFalse(item_error(result.status, result.error).replayed)
        success = ok(request)
        success.replayed = True
        answer = result_outcome(request, success)
        assert isinstance(answer, wallet_pb2.TransferResponse)
        self.assertTrue(answer.replayed)


if __name__ == "__main__":
    unittest.main()
