"""Unit tests of the hold calls (``authorize_transfer``, ``capture_transfer``,
``void_transfer``) of both clients against an in-process node: the request carries the
fields, goes to the node leading ``from_account`` with the no-forward metadata, and a
refusal surfaces with its reason."""

from __future__ import annotations

import asyncio
import datetime
import unittest
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from fake_node import FakeNode, _Status, abort
from wallet_ledger import AsyncWalletClient, Rejected, RetryPolicy, WalletClient, new_transaction_id, wallet_pb2
from wallet_ledger.auth import NO_FORWARD_METADATA_KEY

FAST = RetryPolicy(call_timeout=2.0, total_deadline=4.0, attempts_max=3, backoff_base=0.001, backoff_max=0.004)


def not_leader(leader: str) -> Any:
    """A hold handler answering NOT_LEADER with ``leader`` as the hint."""

    def handle(method: str, request: Any, context: grpc.ServicerContext) -> wallet_pb2.HoldResponse:
        status = status_pb2.Status(code=grpc.StatusCode.UNAVAILABLE.value[0], message="not the leader")
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.ErrorInfo(
                reason="NOT_LEADER", domain="wallet.ledger", metadata={"leader_id": "2", "leader_address": leader}
            )
        )
        status.details.append(detail)
        context.abort_with_status(_Status(grpc.StatusCode.UNAVAILABLE, "not the leader", status.SerializeToString()))
        raise AssertionError("unreachable")

    return handle


def expired(method: str, request: Any, context: grpc.ServicerContext) -> wallet_pb2.HoldResponse:
    abort(context, grpc.StatusCode.FAILED_PRECONDITION, "HOLD_EXPIRED", "the hold expired")
    raise AssertionError("unreachable")


class HoldsTest(unittest.TestCase):
    def test_requests_carry_the_fields_and_follow_the_leader_of_from_account(self) -> None:
        with FakeNode() as follower, FakeNode() as leader:
            follower.hold_handler = not_leader(leader.endpoint)
            tx = new_transaction_id()
            with WalletClient([follower.endpoint, leader.endpoint], FAST) as wallet:
                held = wallet.authorize_transfer(
                    transaction_id=tx,
                    from_account="alice",
                    to_account="bob",
                    amount="10.00",
                    currency="USD",
                    timeout=datetime.timedelta(minutes=5),
                )
                self.assertEqual(held.transfer.transaction_id, tx)
                self.assertEqual(held.transfer.status, wallet_pb2.TRANSFER_STATUS_PENDING)
                self.assertFalse(held.replayed)
                self.assertEqual(wallet.leader("alice"), leader.endpoint)
                wallet.capture_transfer(transaction_id=tx, from_account="alice", amount="4.00")
                wallet.capture_transfer(transaction_id=tx, from_account="alice")
                wallet.void_transfer(transaction_id=tx, from_account="alice")
            self.assertEqual([m for m, _ in follower.holds], ["AuthorizeTransfer"])
            self.assertEqual(
                [m for m, _ in leader.holds], ["AuthorizeTransfer", "CaptureTransfer", "CaptureTransfer", "VoidTransfer"]
            )
            authorize = leader.holds[0][1]
            self.assertEqual(
                (authorize.transaction_id, authorize.from_account, authorize.to_account, authorize.amount, authorize.currency),
                (tx, "alice", "bob", "10.00", "USD"),
            )
            self.assertEqual(authorize.timeout.ToTimedelta(), datetime.timedelta(minutes=5))
            self.assertEqual((leader.holds[1][1].from_account, leader.holds[1][1].amount), ("alice", "4.00"))
            self.assertEqual(leader.holds[2][1].amount, "")  # the whole hold
            self.assertEqual(leader.holds[3][1].transaction_id, tx)
            for metadata in follower.metadata + leader.metadata:
                self.assertEqual(metadata.get(NO_FORWARD_METADATA_KEY), "sdk")

    def test_replayed_flag_is_passed_on(self) -> None:
        with FakeNode() as node:
            node.hold_handler = lambda method, request, context: wallet_pb2.HoldResponse(
                transfer=wallet_pb2.Transfer(transaction_id=request.transaction_id), replayed=True
            )
            with WalletClient([node.endpoint], FAST) as wallet:
                self.assertTrue(wallet.void_transfer(transaction_id="t", from_account="a").replayed)

    def test_hold_expired_surfaces_as_its_reason(self) -> None:
        with FakeNode() as node:
            node.hold_handler = expired
            with WalletClient([node.endpoint], FAST) as wallet:
                with self.assertRaises(Rejected) as caught:
                    wallet.capture_transfer(transaction_id="t", from_account="a", amount="1.00")
        self.assertEqual(caught.exception.reason, "HOLD_EXPIRED")
        self.assertEqual(caught.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(len(node.holds), 1)  # a definite refusal: not retried

    def test_timeout_must_be_a_timedelta(self) -> None:
        with FakeNode() as node, WalletClient([node.endpoint], FAST) as wallet:
            with self.assertRaises(TypeError):
                wallet.authorize_transfer(
                    transaction_id="t", from_account="a", to_account="b", amount="1", currency="USD", timeout=5  # type: ignore[arg-type]
                )

    def test_asyncio_client(self) -> None:
        async def run(endpoints: list[str]) -> tuple[wallet_pb2.HoldResponse, BaseException]:
            async with AsyncWalletClient(endpoints, FAST) as wallet:
                held = await wallet.authorize_transfer(
                    transaction_id="t1",
                    from_account="alice",
                    to_account="bob",
                    amount="2.50",
                    currency="EUR",
                    timeout=datetime.timedelta(milliseconds=1500),
                )
                await wallet.capture_transfer(transaction_id="t1", from_account="alice", amount="1.00")
                node.hold_handler = expired
                try:
                    await wallet.void_transfer(transaction_id="t1", from_account="alice")
                except Rejected as error:
                    return held, error
                raise AssertionError("void_transfer did not fail")

        with FakeNode() as follower, FakeNode() as node:
            follower.hold_handler = not_leader(node.endpoint)
            held, error = asyncio.run(run([follower.endpoint, node.endpoint]))
        self.assertEqual(held.transfer.transaction_id, "t1")
        self.assertEqual([m for m, _ in node.holds], ["AuthorizeTransfer", "CaptureTransfer", "VoidTransfer"])
        authorize = node.holds[0][1]
        self.assertEqual((authorize.to_account, authorize.amount, authorize.currency), ("bob", "2.50", "EUR"))
        self.assertEqual(authorize.timeout.ToMilliseconds(), 1500)
        self.assertEqual(node.holds[1][1].amount, "1.00")
        assert isinstance(error, Rejected)
        self.assertEqual(error.reason, "HOLD_EXPIRED")
        for metadata in follower.metadata + node.metadata:
            self.assertEqual(metadata.get(NO_FORWARD_METADATA_KEY), "sdk")


if __name__ == "__main__":
    unittest.main()
