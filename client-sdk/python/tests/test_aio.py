"""Unit tests of the asyncio clients against an in-process node: the same pipelining (one
stream per node, results matched by id in any order, the same id twice, fallbacks to the unary
path, deadlines, closing), the token on every call, and the retry loop."""

from __future__ import annotations

import asyncio
import time
import unittest
from typing import Any

import grpc

from fake_node import FakeNode, Remote, answering, ok, rejected
from test_pipeline import by_amount
from wallet_ledger import (
    AsyncWalletClient,
    Indefinite,
    Rejected,
    RetryPolicy,
    new_transaction_id,
    wallet_pb2,
)
from wallet_ledger.pipeline import FALLBACK, AsyncPipe

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


async def take(remote: Remote, count: int) -> list[wallet_pb2.TransferRequest]:
    return await asyncio.get_running_loop().run_in_executor(None, remote.take, count)


class AsyncPipelineTest(unittest.IsolatedAsyncioTestCase):
    async def test_results_are_matched_by_id_in_any_order(self) -> None:
        remote = Remote()
        with FakeNode(stream=remote) as node:
            async with AsyncWalletClient([node.endpoint], FAST, token="t") as wallet:
                amounts = ["1.00", "bad", "later", "nobody", "2.00"]
                ids = [new_transaction_id() for _ in amounts]
                calls = asyncio.gather(*(pay(wallet, a, t) for a, t in zip(amounts, ids)), return_exceptions=True)
                received = await take(remote, len(amounts))
                for request in reversed(received):
                    result = by_amount(request)
                    assert result is not None
                    remote.send.put(result)
                outcomes = await calls
                self.assertEqual(outcomes[0].consistency_token, f"tok:{ids[0]}")  # type: ignore[union-attr]
                self.assertIsInstance(outcomes[1], Rejected)
                self.assertEqual((outcomes[1].reason, outcomes[1].field), ("INVALID_AMOUNT", "amount"))  # type: ignore[union-attr]
                self.assertEqual(outcomes[2].consistency_token, "unary")  # type: ignore[union-attr]
                self.assertEqual(node.unary, [ids[2]])
                self.assertIsInstance(outcomes[3], Rejected)
                self.assertEqual((outcomes[3].code, outcomes[3].field), (grpc.StatusCode.NOT_FOUND, "to_account"))  # type: ignore[union-attr]
                self.assertEqual(outcomes[4].consistency_token, f"tok:{ids[4]}")  # type: ignore[union-attr]
                self.assertEqual(wallet.leader("a"), node.endpoint)
                stats = wallet.pipeline_stats()
                self.assertEqual((stats.streams, stats.transfers, stats.unary_transfers), (1, 5, 1))
        self.assertTrue(all(m.get("authorization") == "Bearer t" for m in node.metadata))

    async def test_the_same_id_twice_gets_one_result_each(self) -> None:
        remote = Remote()
        tx = new_transaction_id()
        request = wallet_pb2.TransferRequest(transaction_id=tx)
        with FakeNode(stream=remote) as node:
            async with AsyncWalletClient([node.endpoint], FAST) as wallet:
                first = asyncio.ensure_future(pay(wallet, "1.00", tx))
                await take(remote, 1)
                second = asyncio.ensure_future(pay(wallet, "1.00", tx))
                await take(remote, 1)
                remote.send.put(rejected(request, grpc.StatusCode.ALREADY_EXISTS, "TRANSACTION_ID_REUSED", "transaction_id"))
                with self.assertRaises(Rejected):
                    await first
                self.assertFalse(second.done())
                remote.send.put(ok(request))
                self.assertEqual((await second).consistency_token, f"tok:{tx}")
                self.assertEqual(node.unary, [])

    async def test_many_concurrent_calls_share_one_stream(self) -> None:
        with FakeNode() as node:
            async with AsyncWalletClient([node.endpoint], FAST) as wallet:
                done = await asyncio.gather(*(pay(wallet) for _ in range(100)))
                self.assertEqual(len(done), 100)
                stats = wallet.pipeline_stats()
                self.assertEqual((stats.streams, stats.transfers, stats.unary_transfers), (1, 100, 0))
                self.assertEqual(len(node.streams), 1)

    async def test_broken_and_refused_streams_fall_back_to_unary_then_open_anew(self) -> None:
        remote = Remote()
        with FakeNode(stream=remote) as node:
            async with AsyncWalletClient([node.endpoint], FAST) as wallet:
                ids = [new_transaction_id() for _ in range(3)]
                calls = asyncio.gather(*(pay(wallet, "1.00", tx) for tx in ids))
                await take(remote, 3)
                remote.send.put(grpc.StatusCode.RESOURCE_EXHAUSTED)
                done = await calls
                self.assertEqual([d.consistency_token for d in done], ["unary"] * 3)
                self.assertEqual(sorted(node.unary), sorted(ids))
                await until(lambda: not wallet._pipes)
                later = asyncio.ensure_future(pay(wallet))
                sent = (await take(remote, 1))[0]
                remote.send.put(ok(sent))
                self.assertEqual((await later).consistency_token, f"tok:{sent.transaction_id}")
                self.assertEqual(wallet.pipeline_stats().streams, 2)
        with FakeNode(stream=None) as node:  # UNIMPLEMENTED
            async with AsyncWalletClient([node.endpoint], FAST) as wallet:
                for _ in range(2):
                    self.assertEqual((await pay(wallet)).consistency_token, "unary")
                self.assertEqual((len(node.streams), len(node.unary)), (2, 2))

    async def test_no_result_within_the_call_timeout_goes_unary(self) -> None:
        policy = RetryPolicy(call_timeout=0.3, total_deadline=4.0, attempts_max=3, backoff_base=0.001, backoff_max=0.004)
        with FakeNode(stream=answering(lambda request: None)) as node:
            async with AsyncWalletClient([node.endpoint], policy) as wallet:
                started = time.monotonic()
                self.assertEqual((await pay(wallet)).consistency_token, "unary")
                self.assertGreaterEqual(time.monotonic() - started, 0.3)
                self.assertEqual(wallet._pipes[node.endpoint].waiting(), 0)

    async def test_a_full_queue_sends_the_call_unary(self) -> None:
        with FakeNode() as node:
            async with AsyncWalletClient([node.endpoint], FAST) as wallet:
                pipe = AsyncPipe(node.endpoint, queue_max=1)
                self.assertIsNotNone(pipe.send(wallet_pb2.TransferRequest(transaction_id="x")))
                self.assertIsNone(pipe.send(wallet_pb2.TransferRequest(transaction_id="y")))
                wallet._pipes[node.endpoint] = pipe
                self.assertEqual((await pay(wallet)).consistency_token, "unary")
                self.assertEqual(wallet.pipeline_stats().unary_transfers, 1)
                pipe.close()

    async def test_each_caller_keeps_its_own_deadline(self) -> None:
        policy = RetryPolicy(call_timeout=5.0, total_deadline=0.5, attempts_max=3, backoff_base=0.001, backoff_max=0.004)
        with FakeNode(stream=answering(lambda request: None)) as node:
            async with AsyncWalletClient([node.endpoint], policy) as wallet:
                started = time.monotonic()
                outcomes = await asyncio.gather(pay(wallet), pay(wallet), return_exceptions=True)
                for outcome in outcomes:
                    self.assertIsInstance(outcome, Indefinite)
                    self.assertEqual(outcome.code, grpc.StatusCode.DEADLINE_EXCEEDED)  # type: ignore[union-attr]
                self.assertLess(time.monotonic() - started, 1.5)
                self.assertEqual(node.unary, [])

    async def test_pipelining_off_sends_unary_calls(self) -> None:
        with FakeNode() as node:
            async with AsyncWalletClient([node.endpoint], FAST, pipeline_transfers=False) as wallet:
                await asyncio.gather(*(pay(wallet) for _ in range(4)))
                self.assertEqual((len(node.streams), len(node.unary)), (0, 4))
                self.assertEqual(wallet.pipeline_stats().unary_transfers, 4)

    async def test_closing_ends_the_stream_and_its_task(self) -> None:
        remote = Remote()
        with FakeNode(stream=remote) as node:
            wallet = AsyncWalletClient([node.endpoint], FAST)
            waiting = asyncio.ensure_future(pay(wallet))
            await take(remote, 1)
            pipe = wallet._pipes[node.endpoint]
            await wallet.close()
            assert pipe.task is not None
            self.assertTrue(pipe.task.done())
            self.assertTrue(pipe.closed)
            await asyncio.gather(waiting, return_exceptions=True)  # went on alone: no hang
            await until(lambda: node.open_streams == 0)

    async def test_a_cancelled_caller_is_forgotten(self) -> None:
        pipe = AsyncPipe("n:1")
        waiter = pipe.send(wallet_pb2.TransferRequest(transaction_id="c"))
        assert waiter is not None
        task = asyncio.ensure_future(pipe.wait(waiter, 5))
        await asyncio.sleep(0)
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await task
        self.assertEqual(pipe.waiting(), 0)
        self.assertIsNone(pipe.resolve(ok(wallet_pb2.TransferRequest(transaction_id="c"))))
        pipe.close()
        self.assertIs(await pipe.wait(waiter, 0), FALLBACK)

    async def test_reads_retry_across_nodes(self) -> None:
        with FakeNode() as node:
            async with AsyncWalletClient(["127.0.0.1:1", node.endpoint], FAST) as wallet:
                response = await wallet.get_account("a")
                self.assertEqual(response.account.balance, "1.00")


if __name__ == "__main__":
    unittest.main()
