"""Unit tests of the watches that resume by themselves and of the read and bulk-write wrappers,
against in-process nodes (``fake_read_node.FakeReadNode``, ``fake_node.FakeNode``): a stream
dropped mid-way, old updates replayed, a WATCH_LAGGED cut-off, failover to the next read node,
a read node restarted on the same port, the deadline, the resumption limit, cancel, and the
threaded and asyncio clients alike."""

from __future__ import annotations

import asyncio
import threading
import time
import unittest
from typing import Any

import grpc

from fake_node import FakeNode, unavailable
from fake_read_node import FakeReadNode, balance, fail, free_port, sequences, state
from wallet_ledger import (
    AsyncQueryClient,
    AsyncWalletClient,
    Indefinite,
    QueryClient,
    Rejected,
    RetryPolicy,
    WalletClient,
    query_pb2,
    wallet_pb2,
)
from wallet_ledger._proto.wallet.v1 import cluster_pb2, cluster_pb2_grpc

FAST = RetryPolicy(call_timeout=2.0, total_deadline=4.0, attempts_max=3, backoff_base=0.001, backoff_max=0.004)
UNAVAILABLE, ABORTED = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED

#: Dropped mid-way, then old updates replayed, then cut off for lagging, then live.
DROPPED_REPLAYED_LAGGED = [
    [balance("a", 0, True), balance("b", 0, True), balance("a", 1), balance("a", 2), fail(UNAVAILABLE, "SHUTTING_DOWN")],
    [balance("a", 1), balance("a", 2), balance("a", 3), balance("b", 1), fail(ABORTED, "WATCH_LAGGED")],
    [balance("a", 3), balance("b", 1), balance("a", 4), balance("b", 2), ("hang",)],
]
EXPECTED_A, EXPECTED_B = [0, 1, 2, 3, 4], [0, 1, 2]


def take(watch: Any, count: int) -> list[query_pb2.BalanceUpdate]:
    out = []
    for update in watch:
        out.append(update)
        if len(out) == count:
            break
    return out


class WatchBalancesTest(unittest.TestCase):
    def test_resumes_after_a_drop_a_replay_and_watch_lagged_never_skipping_or_repeating(self) -> None:
        with FakeReadNode(DROPPED_REPLAYED_LAGGED) as node, QueryClient([node.endpoint], FAST) as query:
            watch = query.watch_balances(["a", "b"], timeout=10)
            updates = take(watch, 8)
            watch.cancel()
            self.assertEqual(sequences(updates, "a"), EXPECTED_A)
            self.assertEqual(sequences(updates, "b"), EXPECTED_B)
            self.assertEqual([u.snapshot for u in updates[:2]], [True, True])
            resumes = [dict(r.resume_after_sequence) for r in node.watch_requests]
            self.assertEqual(resumes, [{}, {"a": 2, "b": 0}, {"a": 3, "b": 1}])
            self.assertEqual(list(node.watch_requests[2].account_ids), ["a", "b"])
            self.assertEqual(watch.last_sequences(), {"a": 4, "b": 2})
            self.assertEqual(watch.resumes, 2)

    def test_given_resume_sequences_drop_what_is_at_or_below_them(self) -> None:
        script = [[balance("a", 4), balance("a", 5), balance("a", 6), ("hang",)]]
        with FakeReadNode(script) as node, QueryClient([node.endpoint], FAST) as query:
            watch = query.watch_balances(["a"], {"a": 5}, timeout=10)
            self.assertEqual(sequences(take(watch, 1)), [6])
            watch.cancel()
            self.assertEqual(dict(node.watch_requests[0].resume_after_sequence), {"a": 5})

    def test_fails_over_to_the_next_read_node(self) -> None:
        first = [[balance("a", 0, True), balance("a", 1), fail(UNAVAILABLE, "SHUTTING_DOWN")]]
        second = [[balance("a", 1), balance("a", 2), ("hang",)]]
        with FakeReadNode(first) as one, FakeReadNode(second) as two:
            with QueryClient([one.endpoint, two.endpoint], FAST) as query:
                watch = query.watch_balances(["a"], timeout=10)
                self.assertEqual(sequences(take(watch, 3)), [0, 1, 2])
                watch.cancel()
            self.assertEqual(len(one.watch_requests), 1)
            self.assertEqual(dict(two.watch_requests[0].resume_after_sequence), {"a": 1})

    def test_survives_the_read_node_going_away_and_coming_back_on_the_same_port(self) -> None:
        port = free_port()
        node = FakeReadNode([[balance("a", 0, True), balance("a", 1), ("hang",)]], port=port).__enter__()
        with QueryClient([node.endpoint], FAST) as query:
            watch = query.watch_balances(["a"], timeout=20)
            got = take(watch, 2)
            node.__exit__()  # the stream breaks; reconnections are refused for a while
            restarted: list[FakeReadNode] = []

            def restart() -> None:
                time.sleep(0.5)
                restarted.append(FakeReadNode([[balance("a", 1), balance("a", 2), balance("a", 3), ("hang",)]], port=port).__enter__())

            threading.Thread(target=restart).start()
            got += take(watch, 2)
            watch.cancel()
            self.assertEqual(sequences(got), [0, 1, 2, 3])
            self.assertGreaterEqual(watch.resumes, 1)
            self.assertEqual(dict(restarted[0].watch_requests[0].resume_after_sequence), {"a": 1})
            restarted[0].__exit__()

    def test_a_definite_error_ends_the_watch_as_rejected(self) -> None:
        with FakeReadNode([[fail(grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")]]) as node:
            with QueryClient([node.endpoint], FAST) as query:
                with self.assertRaises(Rejected) as caught:
                    take(query.watch_balances(["nobody"], timeout=5), 1)
                self.assertEqual(caught.exception.reason, "ACCOUNT_NOT_FOUND")
                self.assertEqual(len(node.watch_requests), 1)

    def test_max_resumes_bounds_the_reconnections(self) -> None:
        with FakeReadNode([[fail(UNAVAILABLE, "SHUTTING_DOWN")]]) as node, QueryClient([node.endpoint], FAST) as query:
            with self.assertRaises(Indefinite) as caught:
                take(query.watch_balances(["a"], timeout=10, max_resumes=2), 1)
            self.assertEqual(caught.exception.reason, "SHUTTING_DOWN")
            self.assertEqual(len(node.watch_requests), 3)

    def test_the_timeout_bounds_the_whole_watch(self) -> None:
        script = [[balance("a", 0, True), ("sleep", 0.2), fail(UNAVAILABLE, "SHUTTING_DOWN")]]
        with FakeReadNode(script) as node, QueryClient([node.endpoint], FAST) as query:
            started = time.monotonic()
            watch = query.watch_balances(["a"], timeout=1.0)
            with self.assertRaises(Indefinite) as caught:
                take(watch, 10)
            self.assertLess(time.monotonic() - started, 3.0)
            self.assertIn(caught.exception.code, (grpc.StatusCode.DEADLINE_EXCEEDED, UNAVAILABLE))
            self.assertGreaterEqual(len(node.watch_requests), 2)

    def test_cancel_from_another_thread_ends_the_iteration(self) -> None:
        with FakeReadNode([[balance("a", 0, True), ("hang",)]]) as node, QueryClient([node.endpoint], FAST) as query:
            watch = query.watch_balances(["a"])
            seen: list[int] = []

            def consume() -> None:
                for update in watch:
                    seen.append(update.balance.sequence)

            consumer = threading.Thread(target=consume)
            consumer.start()
            deadline = time.monotonic() + 5
            while not seen and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertTrue(watch.cancel())
            consumer.join(timeout=5)
            self.assertFalse(consumer.is_alive())
            self.assertEqual(seen, [0])
            self.assertFalse(watch.cancel())


class WatchTransferTest(unittest.TestCase):
    def test_resumes_and_delivers_each_version_once_until_the_final_one(self) -> None:
        scripts = [[state(1), fail(UNAVAILABLE, "SHUTTING_DOWN")], [state(1), state(2, final=True)]]
        with FakeReadNode(transfer_watches=scripts) as node, QueryClient([node.endpoint], FAST) as query:
            versions = [u.version for u in query.watch_transfer("t1", timeout=10)]
            self.assertEqual(versions, [1, 2])
            self.assertEqual([r.transaction_id for r in node.transfer_requests], ["t1", "t1"])


class ReadWrappersTest(unittest.TestCase):
    def test_list_transfers_pages_and_iterates(self) -> None:
        with FakeReadNode() as node, QueryClient([node.endpoint], FAST) as query:
            page = query.list_transfers("h", page_size=2)
            self.assertEqual([e.sequence for e in page.entries], [5, 4])
            self.assertEqual(page.next_page_token, "3")
            page = query.list_transfers("h", page_token=page.next_page_token, page_size=2)
            self.assertEqual([e.sequence for e in page.entries], [3, 2])
            self.assertEqual([e.sequence for e in query.iter_transfers("h", page_size=2)], [5, 4, 3, 2, 1])
            with self.assertRaises(Rejected) as caught:
                query.list_transfers("nobody")
            self.assertEqual(caught.exception.reason, "ACCOUNT_NOT_FOUND")

    def test_get_balance_at_a_position_or_a_time(self) -> None:
        with FakeReadNode() as node, QueryClient([node.endpoint], FAST) as query:
            self.assertEqual(query.get_balance_at("a", position="v1.0.3").sequence, 3)
            self.assertEqual(query.get_balance_at("a", timestamp_ms=4000).balance, "4.00")
            with self.assertRaises(ValueError):
                query.get_balance_at("a")
            with self.assertRaises(ValueError):
                query.get_balance_at("a", position="v1.0.1", timestamp_ms=1)
            self.assertEqual(query.get_cluster_status().node_id, 7)


class _WriteNode(FakeNode, cluster_pb2_grpc.ClusterServiceServicer):
    """FakeNode with TransferBatch (item "t2" answered unavailable, "bad" rejected),
    OpenAccounts ("elsewhere" unavailable, "EUR" rejected) and GetClusterStatus."""

    def __init__(self) -> None:
        super().__init__()
        cluster_pb2_grpc.add_ClusterServiceServicer_to_server(self, self.server)
        self.opened_unary: list[str] = []

    def TransferBatch(self, request, context):  # type: ignore[no-untyped-def]
        results = []
        for item in request.transfers:
            if item.transaction_id == "t2":
                results.append(unavailable(item))
            elif item.transaction_id == "bad":
                results.append(
                    wallet_pb2.TransferResult(
                        transaction_id=item.transaction_id,
                        status="rejected",
                        error=wallet_pb2.TransferError(code=9, reason="INSUFFICIENT_FUNDS", message="no"),
                    )
                )
            else:
                results.append(wallet_pb2.TransferResult(transaction_id=item.transaction_id, status="success", consistency_token="b"))
        return wallet_pb2.TransferBatchResponse(results=results)

    def OpenAccounts(self, request_iterator, context):  # type: ignore[no-untyped-def]
        for request in request_iterator:
            if request.account_id == "elsewhere":
                yield wallet_pb2.OpenAccountResult(account_id=request.account_id, status="unavailable")
            elif request.currency == "EUR":
                yield wallet_pb2.OpenAccountResult(
                    account_id=request.account_id,
                    status="rejected",
                    error=wallet_pb2.TransferError(code=6, reason="ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS", message="no"),
                )
            else:
                yield wallet_pb2.OpenAccountResult(
                    account_id=request.account_id, status="success", account=wallet_pb2.Account(account_id=request.account_id)
                )

    def OpenAccount(self, request, context):  # type: ignore[no-untyped-def]
        self.opened_unary.append(request.account_id)
        return wallet_pb2.OpenAccountResponse(account=wallet_pb2.Account(account_id=request.account_id, currency="USD"))

    def GetClusterStatus(self, request, context):  # type: ignore[no-untyped-def]
        return cluster_pb2.GetClusterStatusResponse(node_id=3)


def _t(tx: str) -> dict[str, str]:
    return dict(transaction_id=tx, from_account="a", to_account="b", amount="1.00", currency="USD")


class WriteWrappersTest(unittest.TestCase):
    def test_transfer_batch_retries_unavailable_items_alone(self) -> None:
        with _WriteNode() as node, WalletClient([node.endpoint], FAST) as wallet:
            outcomes = wallet.transfer_batch([_t("t1"), _t("t2"), _t("bad")])
            assert isinstance(outcomes[0], wallet_pb2.TransferResponse) and isinstance(outcomes[1], wallet_pb2.TransferResponse)
            self.assertEqual(outcomes[0].consistency_token, "b")
            self.assertEqual(outcomes[1].consistency_token, "unary")
            assert isinstance(outcomes[2], Rejected)
            self.assertEqual(outcomes[2].reason, "INSUFFICIENT_FUNDS")
            self.assertEqual(node.unary, ["t2"])

    def test_open_accounts_submit_transfers_and_cluster_status(self) -> None:
        with _WriteNode() as node, WalletClient([node.endpoint], FAST) as wallet:
            accounts = [
                dict(account_id="x", currency="USD"),
                dict(account_id="elsewhere", currency="USD"),
                wallet_pb2.OpenAccountRequest(account_id="y", currency="EUR"),
            ]
            outcomes = wallet.open_accounts(accounts)
            assert isinstance(outcomes[0], wallet_pb2.Account) and isinstance(outcomes[1], wallet_pb2.Account)
            self.assertEqual(outcomes[1].currency, "USD")
            assert isinstance(outcomes[2], Rejected)
            self.assertEqual(outcomes[2].code, grpc.StatusCode.ALREADY_EXISTS)
            self.assertEqual(node.opened_unary, ["elsewhere"])
            results = list(wallet.submit_transfers([_t("s1"), _t("s2")], timeout=5))
            self.assertEqual(sorted(r.transaction_id for r in results), ["s1", "s2"])
            self.assertEqual(wallet.get_cluster_status().node_id, 3)


class AsyncWatchTest(unittest.TestCase):
    def test_async_watch_resumes_and_cancels(self) -> None:
        async def run() -> None:
            with FakeReadNode(DROPPED_REPLAYED_LAGGED) as node:
                async with AsyncQueryClient([node.endpoint], FAST) as query:
                    watch = query.watch_balances(["a", "b"], timeout=10)
                    updates = []
                    async for update in watch:
                        updates.append(update)
                        if len(updates) == 8:
                            break
                    self.assertEqual(sequences(updates, "a"), EXPECTED_A)
                    self.assertEqual(sequences(updates, "b"), EXPECTED_B)
                    resumes = [dict(r.resume_after_sequence) for r in node.watch_requests]
                    self.assertEqual(resumes, [{}, {"a": 2, "b": 0}, {"a": 3, "b": 1}])
                    # cancel while a read waits: the iteration stops quietly
                    more = asyncio.ensure_future(watch.__anext__())
                    await asyncio.sleep(0.1)
                    self.assertTrue(watch.cancel())
                    with self.assertRaises(StopAsyncIteration):
                        await asyncio.wait_for(more, 5)

        asyncio.run(run())

    def test_async_errors_transfer_watch_and_wrappers(self) -> None:
        async def run() -> None:
            scripts = [[state(1), fail(ABORTED, "WATCH_LAGGED")], [state(1), state(2), state(3, final=True)]]
            with FakeReadNode([[fail(grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")]], scripts) as node:
                async with AsyncQueryClient([node.endpoint], FAST) as query:
                    with self.assertRaises(Rejected):
                        async for _ in query.watch_balances(["nobody"], timeout=5):
                            pass
                    versions = [u.version async for u in query.watch_transfer("t1", timeout=10)]
                    self.assertEqual(versions, [1, 2, 3])
                    self.assertEqual([e.sequence async for e in query.iter_transfers("h")], [5, 4, 3, 2, 1])
                    self.assertEqual((await query.get_balance_at("a", position="v1.0.2")).sequence, 2)
            with FakeReadNode([[fail(UNAVAILABLE, "SHUTTING_DOWN")]]) as node:
                async with AsyncQueryClient([node.endpoint], FAST) as query:
                    with self.assertRaises(Indefinite):
                        async for _ in query.watch_balances(["a"], max_resumes=1):
                            pass
                    self.assertEqual(len(node.watch_requests), 2)
            with _WriteNode() as write:
                async with AsyncWalletClient([write.endpoint], FAST) as wallet:
                    outcomes = await wallet.transfer_batch([_t("t1"), _t("t2")])
                    self.assertTrue(all(isinstance(o, wallet_pb2.TransferResponse) for o in outcomes))
                    opened = await wallet.open_accounts([dict(account_id="elsewhere", currency="USD")])
                    self.assertIsInstance(opened[0], wallet_pb2.Account)
                    results = [r.transaction_id async for r in wallet.submit_transfers([_t("s1")], timeout=5)]
                    self.assertEqual(results, ["s1"])
                    self.assertEqual((await wallet.get_cluster_status()).node_id, 3)

        asyncio.run(run())


if __name__ == "__main__":
    unittest.main()
