"""Unit tests of the account lifecycle calls (``freeze_account``, ``unfreeze_account``,
``close_account``, ``set_overdraft_limit``) of both clients against an in-process node: the
request carries the fields, goes to the node leading the account with the no-forward
metadata, the answer is the account, and a refusal surfaces with its reason, not retried."""

from __future__ import annotations

import asyncio
import unittest
from typing import Any

import grpc

from fake_node import FakeNode, abort
from test_holds import FAST, not_leader
from wallet_ledger import AsyncWalletClient, Rejected, WalletClient, wallet_pb2
from wallet_ledger.auth import NO_FORWARD_METADATA_KEY


def not_empty(method: str, request: Any, context: grpc.ServicerContext) -> wallet_pb2.Account:
    abort(context, grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_NOT_EMPTY", "the account is not empty")
    raise AssertionError("unreachable")


class LifecycleTest(unittest.TestCase):
    def test_calls_carry_the_fields_and_follow_the_leader_of_the_account(self) -> None:
        with FakeNode() as follower, FakeNode() as leader:
            follower.lifecycle_handler = not_leader(leader.endpoint)
            with WalletClient([follower.endpoint, leader.endpoint], FAST) as wallet:
                frozen = wallet.freeze_account("alice")
                self.assertEqual((frozen.account_id, frozen.status), ("alice", wallet_pb2.ACCOUNT_STATUS_FROZEN))
                self.assertEqual(wallet.leader("alice"), leader.endpoint)
                self.assertEqual(wallet.unfreeze_account("alice").status, wallet_pb2.ACCOUNT_STATUS_ACTIVE)
                self.assertEqual(wallet.set_overdraft_limit("alice", "50.00", "USD").overdraft_limit, "50.00")
                self.assertEqual(wallet.close_account("alice").status, wallet_pb2.ACCOUNT_STATUS_CLOSED)
            self.assertEqual([m for m, _ in follower.lifecycle], ["FreezeAccount"])
            self.assertEqual(
                [m for m, _ in leader.lifecycle], ["FreezeAccount", "UnfreezeAccount", "SetOverdraftLimit", "CloseAccount"]
            )
            self.assertEqual({r.account_id for _, r in leader.lifecycle}, {"alice"})
            limit = leader.lifecycle[2][1]
            self.assertEqual((limit.overdraft_limit, limit.currency), ("50.00", "USD"))
            for metadata in follower.metadata + leader.metadata:
                self.assertEqual(metadata.get(NO_FORWARD_METADATA_KEY), "sdk")

    def test_a_refusal_surfaces_as_its_reason(self) -> None:
        with FakeNode() as node:
            node.lifecycle_handler = not_empty
            with WalletClient([node.endpoint], FAST) as wallet:
                with self.assertRaises(Rejected) as caught:
                    wallet.close_account("alice")
        self.assertEqual(caught.exception.reason, "ACCOUNT_NOT_EMPTY")
        self.assertEqual(caught.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(len(node.lifecycle), 1)  # a definite refusal: not retried

    def test_asyncio_client(self) -> None:
        async def run(endpoints: list[str]) -> list[wallet_pb2.Account]:
            async with AsyncWalletClient(endpoints, FAST) as wallet:
                return [
                    await wallet.freeze_account("bob"),
                    await wallet.unfreeze_account("bob"),
                    await wallet.set_overdraft_limit("bob", "7.50", "EUR"),
                    await wallet.close_account("bob"),
                ]

        with FakeNode() as follower, FakeNode() as node:
            follower.lifecycle_handler = not_leader(node.endpoint)
            accounts = asyncio.run(run([follower.endpoint, node.endpoint]))
        self.assertEqual(
            [a.status for a in accounts],
            [
                wallet_pb2.ACCOUNT_STATUS_FROZEN,
                wallet_pb2.ACCOUNT_STATUS_ACTIVE,
                wallet_pb2.ACCOUNT_STATUS_ACTIVE,
                wallet_pb2.ACCOUNT_STATUS_CLOSED,
            ],
        )
        self.assertEqual(accounts[2].overdraft_limit, "7.50")
        self.assertEqual([m for m, _ in node.lifecycle], ["FreezeAccount", "UnfreezeAccount", "SetOverdraftLimit", "CloseAccount"])
        limit = node.lifecycle[2][1]
        self.assertEqual((limit.account_id, limit.overdraft_limit, limit.currency), ("bob", "7.50", "EUR"))
        for metadata in follower.metadata + node.metadata:
            self.assertEqual(metadata.get(NO_FORWARD_METADATA_KEY), "sdk")


if __name__ == "__main__":
    unittest.main()
