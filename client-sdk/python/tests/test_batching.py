"""Unit tests of the transparent batching of ``transfer()`` against an in-process node."""

from __future__ import annotations

import threading
import time
import unittest
from concurrent import futures
from typing import Any, Callable

import grpc

from fake_node import FakeNode, abort, ok, rejected, unavailable
from wallet_ledger import Indefinite, Rejected, RetryPolicy, WalletClient, new_transaction_id, wallet_pb2
from wallet_ledger.batching import FALLBACK, Batcher, result_outcome

FAST = RetryPolicy(call_timeout=2.0, total_deadline=4.0, attempts_max=3, backoff_base=0.001, backoff_max=0.004)


def pay(wallet: WalletClient, amount: str = "1.00", tx: str = "", source: str = "a") -> wallet_pb2.TransferResponse:
    return wallet.transfer(
        transaction_id=tx or new_transaction_id(), from_account=source, to_account="b", amount=amount, currency="USD"
    )


class Gate:
    """A TransferBatch handler that holds the first ``held`` batches until ``open()``."""

    def __init__(self, held: int, answer: Callable[[wallet_pb2.TransferRequest], wallet_pb2.TransferResult] = ok):
        self.held = held
        self.answer = answer
        self.arrived = threading.Semaphore(0)
        self.gate = threading.Event()
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, request: wallet_pb2.TransferBatchRequest, context: Any) -> wallet_pb2.TransferBatchResponse:
        with self.lock:
            self.count += 1
            hold = self.count <= self.held
        self.arrived.release()
        if hold:
            self.gate.wait(10)
        return wallet_pb2.TransferBatchResponse(results=[self.answer(t) for t in request.transfers])


def by_amount(request: wallet_pb2.TransferRequest) -> wallet_pb2.TransferResult:
    if request.amount == "bad":
        return rejected(request, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_AMOUNT", "amount")
    if request.amount == "poor":
        return rejected(request, grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS")
    if request.amount == "later":
        return unavailable(request)
    return ok(request)


def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


class BatchingTest(unittest.TestCase):
    def test_an_idle_call_goes_at_once_alone_and_learns_the_leader(self) -> None:
        with FakeNode(batch=Gate(0)) as node, WalletClient([node.endpoint], FAST) as wallet:
            started = time.monotonic()
            done = pay(wallet, tx="3f2504e0-4f89-11d3-9a0c-0305e82c3301")
            self.assertLess(time.monotonic() - started, 1.0)
            self.assertEqual(done.status, "success")
            self.assertEqual(done.transaction_id, "3f2504e0-4f89-11d3-9a0c-0305e82c3301")
            self.assertEqual(done.consistency_token, "tok:3f2504e0-4f89-11d3-9a0c-0305e82c3301")
            self.assertEqual(node.batches, [["3f2504e0-4f89-11d3-9a0c-0305e82c3301"]])
            self.assertEqual(node.unary, [])
            self.assertEqual(wallet.leader("a"), node.endpoint)
            stats = wallet.stats()
            self.assertEqual((stats.transfers, stats.batches, stats.unary_transfers), (1, 1, 0))

    def test_at_most_n_in_flight_then_the_queue_goes_as_one_batch_in_order(self) -> None:
        gate = Gate(held=2)
        with FakeNode(batch=gate) as node, WalletClient([node.endpoint], FAST, batch_in_flight_max=2) as wallet:
            with futures.ThreadPoolExecutor(max_workers=16) as pool:
                first = [pool.submit(pay, wallet) for _ in range(2)]
                gate.arrived.acquire(timeout=5)
                gate.arrived.acquire(timeout=5)
                # Both slots are taken: these wait in the queue, in this order.
                queued_ids = [new_transaction_id() for _ in range(10)]
                queued = []
                for tx in queued_ids:
                    queued.append(pool.submit(pay, wallet, "1.00", tx))
                    wait_until(lambda: len(wallet._batcher._lanes[node.endpoint].queue) == len(queued))  # type: ignore[union-attr]
                self.assertEqual(len(node.batches), 2)
                gate.gate.set()
                for f in first + queued:
                    self.assertEqual(f.result(timeout=5).status, "success")
            self.assertEqual(node.in_flight_peak, 2)
            self.assertEqual([len(b) for b in node.batches[:2]], [1, 1])
            # The first batch to return takes the whole queue, in arrival order.
            self.assertEqual(node.batches[2], queued_ids)
            self.assertEqual(len(node.batches), 3)
            self.assertEqual(wallet.stats().largest_batch, 10)
            self.assertEqual(wallet._batcher._lanes, {})  # type: ignore[union-attr]

    def test_results_are_matched_by_position_with_their_own_errors(self) -> None:
        gate = Gate(held=1, answer=by_amount)
        unary_seen: list[str] = []

        def unary(request: wallet_pb2.TransferRequest, context: Any) -> wallet_pb2.TransferResponse:
            unary_seen.append(request.transaction_id)
            return wallet_pb2.TransferResponse(status="success", transaction_id=request.transaction_id, consistency_token="unary")

        with FakeNode(batch=gate, unary=unary) as node, WalletClient([node.endpoint], FAST, batch_in_flight_max=1) as wallet:
            with futures.ThreadPoolExecutor(max_workers=8) as pool:
                blocker = pool.submit(pay, wallet)
                gate.arrived.acquire(timeout=5)
                amounts = ["1.00", "bad", "2.00", "poor", "later", "3.00"]
                ids = [new_transaction_id() for _ in amounts]
                calls = []
                for amount, tx in zip(amounts, ids):
                    calls.append(pool.submit(pay, wallet, amount, tx))
                    wait_until(lambda: len(wallet._batcher._lanes[node.endpoint].queue) == len(calls))  # type: ignore[union-attr]
                gate.gate.set()
                blocker.result(timeout=5)
                outcomes: list[Any] = []
                for call in calls:
                    try:
                        outcomes.append(call.result(timeout=5))
                    except Exception as error:  # noqa: BLE001
                        outcomes.append(error)
        self.assertEqual(node.batches[1], ids)
        for index in (0, 2, 5):
            self.assertEqual(outcomes[index].consistency_token, f"tok:{ids[index]}")
        bad, poor = outcomes[1], outcomes[3]
        self.assertIsInstance(bad, Rejected)
        self.assertEqual((bad.code, bad.reason, bad.field), (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_AMOUNT", "amount"))
        self.assertIsInstance(poor, Rejected)
        # The fake names no field for it; the real node names "amount", dropped like the unary
        # status drops it (BadRequest is for INVALID_ARGUMENT only).
        self.assertEqual((poor.code, poor.reason, poor.field), (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", None))
        self.assertEqual(bad.details.domain, "wallet.ledger")
        named = result_outcome(wallet_pb2.TransferRequest(transaction_id="x"), rejected(
            wallet_pb2.TransferRequest(transaction_id="x"), grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND", "to_account"))
        assert isinstance(named, Rejected)
        self.assertEqual((named.code, named.reason, named.field), (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND", None))
        # "unavailable" went again, alone, through the unary path, with the same id.
        self.assertEqual(unary_seen, [ids[4]])
        self.assertEqual(outcomes[4].consistency_token, "unary")

    def test_a_failed_batch_falls_back_to_unary_with_the_same_ids(self) -> None:
        def down(request: wallet_pb2.TransferBatchRequest, context: Any) -> wallet_pb2.TransferBatchResponse:
            abort(context, grpc.StatusCode.UNAVAILABLE, "STORAGE_FAILURE")
            raise AssertionError("unreachable")

        with FakeNode(batch=down) as node, WalletClient([node.endpoint], FAST) as wallet:
            ids = [new_transaction_id() for _ in range(5)]
            with futures.ThreadPoolExecutor(max_workers=5) as pool:
                done = list(pool.map(lambda tx: pay(wallet, "1.00", tx), ids))
            self.assertEqual([d.transaction_id for d in done], ids)
            self.assertEqual(sorted(node.unary), sorted(ids))
            self.assertEqual(sorted(tx for batch in node.batches for tx in batch), sorted(ids))
            stats = wallet.stats()
            self.assertEqual(stats.failed_batches, stats.batches)
            self.assertEqual(stats.unary_transfers, 5)

    def test_an_old_server_without_transfer_batch_gets_unary_calls(self) -> None:
        with FakeNode(batch=None) as node, WalletClient([node.endpoint], FAST) as wallet:
            for _ in range(3):
                self.assertEqual(pay(wallet).consistency_token, "unary")
            self.assertEqual(len(node.batches), 1)  # UNIMPLEMENTED once, then unary only
            self.assertEqual(len(node.unary), 3)

    def test_a_malformed_answer_falls_back(self) -> None:
        def short(request: wallet_pb2.TransferBatchRequest, context: Any) -> wallet_pb2.TransferBatchResponse:
            return wallet_pb2.TransferBatchResponse(results=[])

        with FakeNode(batch=short) as node, WalletClient([node.endpoint], FAST) as wallet:
            self.assertEqual(pay(wallet).consistency_token, "unary")
        request = wallet_pb2.TransferRequest(transaction_id="x")
        self.assertIs(result_outcome(request, wallet_pb2.TransferResult(transaction_id="y", status="success")), FALLBACK)
        self.assertIs(result_outcome(request, wallet_pb2.TransferResult(status="rejected")), FALLBACK)
        self.assertIs(result_outcome(request, wallet_pb2.TransferResult(status="what")), FALLBACK)

    def test_each_caller_keeps_its_own_deadline(self) -> None:
        gate = Gate(held=10)
        policy = RetryPolicy(call_timeout=5.0, total_deadline=0.5, attempts_max=3, backoff_base=0.001, backoff_max=0.004)
        try:
            with FakeNode(batch=gate) as node, WalletClient([node.endpoint], policy, batch_in_flight_max=1) as wallet:
                with futures.ThreadPoolExecutor(max_workers=4) as pool:
                    started = time.monotonic()
                    in_flight = pool.submit(pay, wallet)
                    gate.arrived.acquire(timeout=5)
                    queued = pool.submit(pay, wallet)
                    for call in (in_flight, queued):
                        with self.assertRaises(Indefinite) as caught:
                            call.result(timeout=5)
                        self.assertEqual(caught.exception.code, grpc.StatusCode.DEADLINE_EXCEEDED)
                    self.assertLess(time.monotonic() - started, 1.5)
        finally:
            gate.gate.set()

    def test_a_queued_call_past_its_deadline_leaves_the_queue_unsent(self) -> None:
        release = threading.Event()
        sent: list[list[str]] = []

        def send(node: str, request: wallet_pb2.TransferBatchRequest, timeout: float) -> wallet_pb2.TransferBatchResponse:
            sent.append([t.transaction_id for t in request.transfers])
            release.wait(5)
            return wallet_pb2.TransferBatchResponse(results=[ok(t) for t in request.transfers])

        batcher = Batcher(send, lambda node, requests: None, in_flight_max=1, call_timeout=5.0)
        first = wallet_pb2.TransferRequest(transaction_id="first")
        with futures.ThreadPoolExecutor(max_workers=2) as pool:
            long = pool.submit(batcher.submit, "n:1", first, time.monotonic() + 5)
            wait_until(lambda: len(sent) == 1)
            started = time.monotonic()
            with self.assertRaises(Indefinite) as caught:
                batcher.submit("n:1", wallet_pb2.TransferRequest(transaction_id="late"), time.monotonic() + 0.2)
            self.assertEqual(caught.exception.code, grpc.StatusCode.DEADLINE_EXCEEDED)
            self.assertLess(time.monotonic() - started, 1.0)
            release.set()
            outcome = long.result(timeout=5)
        self.assertIsInstance(outcome, wallet_pb2.TransferResponse)
        self.assertEqual(sent, [["first"]])  # "late" was never sent
        self.assertEqual(batcher._lanes, {})

    def test_batching_off_sends_unary_calls(self) -> None:
        with FakeNode(batch=Gate(0)) as node, WalletClient([node.endpoint], FAST, batch_in_flight_max=0) as wallet:
            with futures.ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(lambda _: pay(wallet), range(4)))
            self.assertEqual((len(node.batches), len(node.unary)), (0, 4))
            self.assertEqual(wallet.stats().unary_transfers, 4)

    def test_many_threads_every_call_answered_fewer_batches(self) -> None:
        with FakeNode(batch=Gate(0, answer=by_amount)) as node, WalletClient([node.endpoint], FAST) as wallet:
            amounts = ["1.00", "bad", "later", "2.00"] * 50
            with futures.ThreadPoolExecutor(max_workers=32) as pool:
                results = list(pool.map(lambda amount: _outcome(lambda: pay(wallet, amount)), amounts))
            for amount, result in zip(amounts, results):
                if amount == "bad":
                    self.assertIsInstance(result, Rejected)
                else:
                    self.assertIsInstance(result, wallet_pb2.TransferResponse)
            stats = wallet.stats()
            self.assertEqual(stats.batched_transfers, 200)
            self.assertLessEqual(stats.batches, 200)
            self.assertEqual(stats.unary_transfers, 50)


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as error:  # noqa: BLE001
        return error


if __name__ == "__main__":
    unittest.main()
