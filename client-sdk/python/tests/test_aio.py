"""Unit tests of the asyncio clients against an in-process node: the same batching (at most N
in flight, the queue as one batch in order, results by position, fallbacks, deadlines), the
token on every call, and the retry loop."""

from __future__ import annotations

import asyncio
import time
import unittest
from typing import Any

import grpc

from fake_node import FakeNode, abort
from test_batching import Gate, by_amount
from wallet_ledger import (
    AsyncWalletClient,
    Indefinite,
    Rejected,
    RetryPolicy,
    new_transaction_id,
    wallet_pb2,
)

FAST = RetryPolicy(call_timeout=2.0, total_deadline=4.0, attempts_max=3, backoff_base=0.001, backoff_max=0.004)


async def pay(wallet: AsyncWalletClient, amount: str = "1.00", tx: str = "") -> wallet_pb2.TransferResponse:
    return await wallet.transfer(
        transaction_id=tx or new_transaction_id(), from_account="a", to_account="b", amount=amount, currency="USD"
    )


async def until(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


class AsyncBatchingTest(unittest.IsolatedAsyncioTestCase):
    async def test_queue_goes_as_one_batch_with_results_by_position(self) -> None:
        gate = Gate(held=1, answer=by_amount)
        with FakeNode(batch=gate) as node:
            async with AsyncWalletClient([node.endpoint], FAST, batch_in_flight_max=1, token="t") as wallet:
                blocker = asyncio.ensure_future(pay(wallet))
                await until(lambda: len(node.batches) == 1)
                amounts = ["1.00", "bad", "later", "2.00"]
                ids = [new_transaction_id() for _ in amounts]
                calls = []
                for amount, tx in zip(amounts, ids):
                    calls.append(asyncio.ensure_future(pay(wallet, amount, tx)))
                    await asyncio.sleep(0)  # queued in this order
                await until(lambda: len(wallet._batcher._lanes[node.endpoint].queue) == 4)  # type: ignore[union-attr]
                gate.gate.set()
                await blocker
                outcomes = await asyncio.gather(*calls, return_exceptions=True)
                self.assertEqual(node.batches[1], ids)
                self.assertEqual(outcomes[0].consistency_token, f"tok:{ids[0]}")  # type: ignore[union-attr]
                self.assertIsInstance(outcomes[1], Rejected)
                self.assertEqual(outcomes[1].reason, "INVALID_AMOUNT")  # type: ignore[union-attr]
                self.assertEqual(outcomes[2].consistency_token, "unary")  # type: ignore[union-attr]
                self.assertEqual(node.unary, [ids[2]])
                self.assertEqual(outcomes[3].consistency_token, f"tok:{ids[3]}")  # type: ignore[union-attr]
                self.assertEqual(wallet.leader("a"), node.endpoint)
                stats = wallet.stats()
                self.assertEqual((stats.transfers, stats.batches, stats.unary_transfers), (5, 2, 1))
        self.assertTrue(all(m.get("authorization") == "Bearer t" for m in node.metadata))

    async def test_many_concurrent_calls_share_batches(self) -> None:
        with FakeNode(batch=Gate(0)) as node:
            async with AsyncWalletClient([node.endpoint], FAST) as wallet:
                done = await asyncio.gather(*(pay(wallet) for _ in range(100)))
                self.assertEqual(len(done), 100)
                stats = wallet.stats()
                self.assertEqual(stats.batched_transfers, 100)
                self.assertLess(stats.batches, 100)
                self.assertLessEqual(node.in_flight_peak, 2)

    async def test_failed_batch_and_old_server_fall_back_to_unary(self) -> None:
        def down(request: wallet_pb2.TransferBatchRequest, context: Any) -> wallet_pb2.TransferBatchResponse:
            abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED")
            raise AssertionError("unreachable")

        for handler in (down, None):
            with FakeNode(batch=handler) as node:
                async with AsyncWalletClient([node.endpoint], FAST) as wallet:
                    ids = [new_transaction_id() for _ in range(3)]
                    done = await asyncio.gather(*(pay(wallet, "1.00", tx) for tx in ids))
                    self.assertEqual([d.transaction_id for d in done], ids)
                    self.assertEqual(sorted(node.unary), sorted(ids))

    async def test_each_caller_keeps_its_own_deadline(self) -> None:
        gate = Gate(held=10)
        policy = RetryPolicy(call_timeout=5.0, total_deadline=0.5, attempts_max=3, backoff_base=0.001, backoff_max=0.004)
        try:
            with FakeNode(batch=gate) as node:
                async with AsyncWalletClient([node.endpoint], policy, batch_in_flight_max=1) as wallet:
                    started = time.monotonic()
                    outcomes = await asyncio.gather(pay(wallet), pay(wallet), return_exceptions=True)
                    for outcome in outcomes:
                        self.assertIsInstance(outcome, Indefinite)
                        self.assertEqual(outcome.code, grpc.StatusCode.DEADLINE_EXCEEDED)  # type: ignore[union-attr]
                    self.assertLess(time.monotonic() - started, 1.5)
        finally:
            gate.gate.set()

    async def test_reads_retry_across_nodes(self) -> None:
        with FakeNode() as node:
            async with AsyncWalletClient(["127.0.0.1:1", node.endpoint], FAST) as wallet:
                response = await wallet.get_account("a")
                self.assertEqual(response.account.balance, "1.00")


if __name__ == "__main__":
    unittest.main()
