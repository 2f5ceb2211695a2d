"""Unit tests of the transparent pipelining of ``transfer()`` (one ``SubmitTransfers`` stream
per node, shared by concurrent calls) against an in-process node, and of ``Pipe`` itself."""

from __future__ import annotations

import asyncio
import threading
import time
import unittest
from concurrent import futures
from typing import Any, Callable, Optional

import grpc

from fake_node import END, FakeNode, Remote, abort, answering, ok, rejected, unavailable
from wallet_ledger import PIPE_QUEUE_MAX, Indefinite, Rejected, RetryPolicy, WalletClient, new_transaction_id, wallet_pb2
from wallet_ledger.pipeline import FALLBACK, AsyncPipe, Pipe, result_outcome

FAST = RetryPolicy(call_timeout=2.0, total_deadline=4.0, attempts_max=3, backoff_base=0.001, backoff_max=0.004)


def pay(wallet: WalletClient, amount: str = "1.00", tx: str = "", source: str = "a") -> wallet_pb2.TransferResponse:
    return wallet.transfer(
        transaction_id=tx or new_transaction_id(), from_account=source, to_account="b", amount=amount, currency="USD"
    )


def by_amount(request: wallet_pb2.TransferRequest) -> Optional[wallet_pb2.TransferResult]:
    """Answers by the amount: "bad", "poor", "nobody" (rejections naming a field), "later"
    (unavailable), "odd" (malformed), "never" (no answer), else success."""
    if request.amount == "bad":
        return rejected(request, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_AMOUNT", "amount")
    if request.amount == "poor":
        return rejected(request, grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", "amount")
    if request.amount == "nobody":
        return rejected(request, grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND", "to_account")
    if request.amount == "later":
        return unavailable(request)
    if request.amount == "odd":
        return wallet_pb2.TransferResult(transaction_id=request.transaction_id, status="rejected")  # no error
    if request.amount == "never":
        return None
    return ok(request)


def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def outcome_of(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as error:  # noqa: BLE001
        return error


def pipe_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("wallet-ledger-pipe")]


class PipelineTest(unittest.TestCase):
    def test_an_idle_call_goes_down_a_stream_at_once_and_learns_the_leader(self) -> None:
        with FakeNode() as node, WalletClient([node.endpoint], FAST) as wallet:
            started = time.monotonic()
            done = pay(wallet, tx="3f2504e0-4f89-11d3-9a0c-0305e82c3301")
            self.assertLess(time.monotonic() - started, 1.0)
            self.assertEqual(done.status, "success")
            self.assertEqual(done.transaction_id, "3f2504e0-4f89-11d3-9a0c-0305e82c3301")
            self.assertEqual(done.consistency_token, "tok:3f2504e0-4f89-11d3-9a0c-0305e82c3301")
            self.assertEqual(wallet.leader("a"), node.endpoint)
            pay(wallet)  # the same stream again
            self.assertEqual(len(node.streams), 1)
            self.assertEqual(len(node.streams[0]), 2)
            self.assertEqual(node.unary, [])
            stats = wallet.pipeline_stats()
            self.assertEqual((stats.streams, stats.transfers, stats.unary_transfers), (1, 2, 0))

    def test_results_are_matched_by_id_in_any_order_with_their_own_errors(self) -> None:
        remote = Remote()
        with FakeNode(stream=remote) as node, WalletClient([node.endpoint], FAST) as wallet:
            amounts = ["1.00", "bad", "2.00", "poor", "later", "nobody", "odd", "3.00"]
            ids = [new_transaction_id() for _ in amounts]
            with futures.ThreadPoolExecutor(max_workers=len(amounts)) as pool:
                calls = [pool.submit(outcome_of, lambda a=a, t=t: pay(wallet, a, t)) for a, t in zip(amounts, ids)]
                received = remote.take(len(amounts))
                self.assertEqual(sorted(r.transaction_id for r in received), sorted(ids))
                for request in reversed(received):  # every result in another order than sent
                    result = by_amount(request)
                    assert result is not None
                    remote.send.put(result)
                outcomes = [call.result(timeout=5) for call in calls]
        for index in (0, 2, 7):
            self.assertEqual(outcomes[index].consistency_token, f"tok:{ids[index]}")
        bad, poor, nobody = outcomes[1], outcomes[3], outcomes[5]
        self.assertIsInstance(bad, Rejected)
        self.assertEqual((bad.code, bad.reason, bad.field), (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_AMOUNT", "amount"))
        self.assertEqual(bad.details.domain, "wallet.ledger")
        # The field is passed through as the node gives it, whatever the code.
        self.assertIsInstance(poor, Rejected)
        self.assertEqual(
            (poor.code, poor.reason, poor.field), (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", "amount")
        )
        self.assertIsInstance(nobody, Rejected)
        self.assertEqual(
            (nobody.code, nobody.reason, nobody.field), (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND", "to_account")
        )
        # "unavailable" and the malformed result went again, alone, unary, with the same id.
        self.assertEqual(sorted(node.unary), sorted([ids[4], ids[6]]))
        self.assertEqual((outcomes[4].consistency_token, outcomes[6].consistency_token), ("unary", "unary"))
        stats = wallet.pipeline_stats()
        self.assertEqual((stats.streams, stats.transfers, stats.unary_transfers), (1, 8, 2))

    def test_the_same_id_twice_gets_one_result_each_in_order_of_sending(self) -> None:
        remote = Remote()
        tx = new_transaction_id()
        with FakeNode(stream=remote) as node, WalletClient([node.endpoint], FAST) as wallet:
            with futures.ThreadPoolExecutor(max_workers=2) as pool:
                first = pool.submit(outcome_of, lambda: pay(wallet, "poor", tx))
                remote.take(1)
                second = pool.submit(outcome_of, lambda: pay(wallet, "poor", tx))
                remote.take(1)
                self.assertEqual(node.streams, [[tx, tx]])
                request = wallet_pb2.TransferRequest(transaction_id=tx)
                remote.send.put(rejected(request, grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS"))
                self.assertIsInstance(first.result(timeout=5), Rejected)  # the first result: the first caller
                self.assertFalse(second.done())
                remote.send.put(ok(request))
                self.assertEqual(second.result(timeout=5).consistency_token, f"tok:{tx}")
            self.assertEqual(node.unary, [])

    def test_a_broken_stream_sends_every_waiter_unary_and_the_next_call_opens_a_new_one(self) -> None:
        remote = Remote()
        with FakeNode(stream=remote) as node, WalletClient([node.endpoint], FAST) as wallet:
            ids = [new_transaction_id() for _ in range(3)]
            with futures.ThreadPoolExecutor(max_workers=3) as pool:
                calls = [pool.submit(pay, wallet, "1.00", tx) for tx in ids]
                remote.take(3)
                remote.send.put(grpc.StatusCode.UNAVAILABLE)
                done = [call.result(timeout=5) for call in calls]
            self.assertEqual([d.consistency_token for d in done], ["unary"] * 3)
            self.assertEqual(sorted(node.unary), sorted(ids))  # the same ids
            wait_until(lambda: not wallet._pipes)  # the broken pipe is forgotten
            # The next call opens a new stream, which answers.
            later = new_transaction_id()
            calls2 = futures.ThreadPoolExecutor(max_workers=1).submit(pay, wallet, "1.00", later)
            remote.take(1)
            remote.send.put(ok(wallet_pb2.TransferRequest(transaction_id=later)))
            self.assertEqual(calls2.result(timeout=5).consistency_token, f"tok:{later}")
            self.assertEqual(len(node.streams), 2)
            stats = wallet.pipeline_stats()
            self.assertEqual((stats.streams, stats.transfers, stats.unary_transfers), (2, 4, 3))

    def test_a_stream_that_ends_early_sends_its_waiters_unary(self) -> None:
        remote = Remote()
        with FakeNode(stream=remote) as node, WalletClient([node.endpoint], FAST) as wallet:
            with futures.ThreadPoolExecutor(max_workers=2) as pool:
                calls = [pool.submit(pay, wallet) for _ in range(2)]
                remote.take(2)
                remote.send.put(END)  # OK, without the results
                self.assertEqual([c.result(timeout=5).consistency_token for c in calls], ["unary"] * 2)

    def test_a_refused_stream_sends_the_call_unary_and_is_tried_again_next_time(self) -> None:
        with FakeNode(stream=None) as node, WalletClient([node.endpoint], FAST) as wallet:  # UNIMPLEMENTED
            for _ in range(3):
                self.assertEqual(pay(wallet).consistency_token, "unary")
            self.assertEqual(len(node.unary), 3)
            self.assertEqual(len(node.streams), 3)  # a new stream each time
            stats = wallet.pipeline_stats()
            self.assertEqual((stats.streams, stats.unary_transfers), (3, 3))
        # An unreachable node: the stream cannot open, the unary loop moves on to the next.
        with FakeNode() as node, WalletClient(["127.0.0.1:1", node.endpoint], FAST) as wallet:
            self.assertEqual(pay(wallet).consistency_token, "unary")
            self.assertEqual(wallet.leader("a"), node.endpoint)
            self.assertEqual(len(pay(wallet).consistency_token.split(":")), 2)  # now down its stream
            self.assertEqual(len(node.streams), 1)

    def test_no_result_within_the_call_timeout_goes_unary_and_is_forgotten(self) -> None:
        policy = RetryPolicy(call_timeout=0.3, total_deadline=4.0, attempts_max=3, backoff_base=0.001, backoff_max=0.004)
        remote = Remote()
        with FakeNode(stream=remote) as node, WalletClient([node.endpoint], policy) as wallet:
            tx = new_transaction_id()
            started = time.monotonic()
            self.assertEqual(pay(wallet, tx=tx).consistency_token, "unary")
            self.assertGreaterEqual(time.monotonic() - started, 0.3)
            self.assertEqual(node.unary, [tx])
            pipe = wallet._pipes[node.endpoint]
            self.assertEqual(pipe.waiting(), 0)  # forgotten
            remote.send.put(ok(wallet_pb2.TransferRequest(transaction_id=tx)))  # late: ignored
            remote.take(1)
            # The stream stays open for the next call.
            nxt = futures.ThreadPoolExecutor(max_workers=1).submit(pay, wallet)
            sent = remote.take(1)[0]
            remote.send.put(ok(sent))
            self.assertEqual(nxt.result(timeout=5).consistency_token, f"tok:{sent.transaction_id}")
            self.assertEqual(wallet.pipeline_stats().streams, 1)

    def test_a_full_queue_sends_the_call_unary(self) -> None:
        with FakeNode() as node, WalletClient([node.endpoint], FAST) as wallet:
            # A pipe nobody writes from, with room for one request, taken.
            pipe = Pipe(node.endpoint, queue_max=1)
            self.assertIsNotNone(pipe.send(wallet_pb2.TransferRequest(transaction_id="x")))
            wallet._pipes[node.endpoint] = pipe
            self.assertEqual(pay(wallet).consistency_token, "unary")
            stats = wallet.pipeline_stats()
            self.assertEqual((stats.streams, stats.transfers, stats.unary_transfers), (0, 0, 1))
            self.assertEqual(node.streams, [])
            pipe.close()

    def test_each_caller_keeps_its_own_deadline(self) -> None:
        policy = RetryPolicy(call_timeout=5.0, total_deadline=0.5, attempts_max=3, backoff_base=0.001, backoff_max=0.004)
        with FakeNode(stream=answering(lambda request: None)) as node, WalletClient([node.endpoint], policy) as wallet:
            with futures.ThreadPoolExecutor(max_workers=2) as pool:
                started = time.monotonic()
                calls = [pool.submit(pay, wallet) for _ in range(2)]
                for call in calls:
                    with self.assertRaises(Indefinite) as caught:
                        call.result(timeout=5)
                    self.assertEqual(caught.exception.code, grpc.StatusCode.DEADLINE_EXCEEDED)
                self.assertLess(time.monotonic() - started, 1.5)
            self.assertEqual(node.unary, [])  # no time left to go unary
            self.assertEqual(wallet._pipes[node.endpoint].waiting(), 0)

    def test_pipelining_off_sends_unary_calls(self) -> None:
        with FakeNode() as node, WalletClient([node.endpoint], FAST, pipeline_transfers=False) as wallet:
            with futures.ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(lambda _: pay(wallet), range(4)))
            self.assertEqual((len(node.streams), len(node.unary)), (0, 4))
            stats = wallet.pipeline_stats()
            self.assertEqual((stats.streams, stats.transfers, stats.unary_transfers), (0, 0, 4))

    def test_many_threads_every_call_answered_down_one_stream(self) -> None:
        with FakeNode(stream=answering(by_amount)) as node, WalletClient([node.endpoint], FAST) as wallet:
            amounts = ["1.00", "bad", "later", "2.00"] * 50
            with futures.ThreadPoolExecutor(max_workers=32) as pool:
                results = list(pool.map(lambda amount: outcome_of(lambda: pay(wallet, amount)), amounts))
            for amount, result in zip(amounts, results):
                if amount == "bad":
                    self.assertIsInstance(result, Rejected)
                else:
                    self.assertIsInstance(result, wallet_pb2.TransferResponse)
            stats = wallet.pipeline_stats()
            self.assertEqual((stats.streams, stats.transfers, stats.unary_transfers), (1, 200, 50))
            self.assertEqual(len(node.streams), 1)

    def test_closing_the_client_ends_the_stream_and_its_thread(self) -> None:
        remote = Remote()
        with FakeNode(stream=remote) as node:
            before = set(pipe_threads())
            wallet = WalletClient([node.endpoint], FAST)
            waiting = futures.ThreadPoolExecutor(max_workers=1).submit(outcome_of, lambda: pay(wallet))
            remote.take(1)
            self.assertEqual(len(set(pipe_threads()) - before), 1)
            wallet.close()
            # The waiter went on alone, unary: done before the channel closed, or an error.
            outcome = waiting.result(timeout=5)
            if isinstance(outcome, wallet_pb2.TransferResponse):
                self.assertEqual(outcome.consistency_token, "unary")
            else:
                self.assertIsInstance(outcome, Exception)
            wait_until(lambda: not (set(pipe_threads()) - before))
            wait_until(lambda: node.open_streams == 0)
            self.assertIsNone(wallet._pipe(node.endpoint))  # a closed client opens nothing

    def test_a_dropped_client_ends_its_stream(self) -> None:
        with FakeNode() as node:
            before = set(pipe_threads())
            wallet = WalletClient([node.endpoint], FAST)
            pay(wallet)
            del wallet
            wait_until(lambda: not (set(pipe_threads()) - before))
            wait_until(lambda: node.open_streams == 0)


class PipeTest(unittest.TestCase):
    def test_each_result_goes_to_its_caller_in_order_of_sending_per_id(self) -> None:
        pipe = Pipe("n:1")
        a = pipe.send(wallet_pb2.TransferRequest(transaction_id="a", from_account="x"))
        b1 = pipe.send(wallet_pb2.TransferRequest(transaction_id="b", from_account="y"))
        b2 = pipe.send(wallet_pb2.TransferRequest(transaction_id="b", from_account="y"))
        assert a is not None and b1 is not None and b2 is not None
        requests = pipe.requests()
        self.assertEqual([next(requests).transaction_id for _ in range(3)], ["a", "b", "b"])
        request = wallet_pb2.TransferRequest
        self.assertIsNone(pipe.resolve(ok(request(transaction_id="zzz"))))  # unknown: ignored
        self.assertIsNone(pipe.resolve(rejected(request(transaction_id="b"), grpc.StatusCode.FAILED_PRECONDITION, "X")))
        succeeded = pipe.resolve(ok(request(transaction_id="a")))
        self.assertEqual(succeeded.from_account if succeeded else None, "x")  # its routing key is led here
        self.assertIsNone(pipe.resolve(unavailable(request(transaction_id="b"))))
        self.assertIsInstance(pipe.wait(a, 0), wallet_pb2.TransferResponse)
        self.assertIsInstance(pipe.wait(b1, 0), Rejected)
        self.assertIs(pipe.wait(b2, 0), FALLBACK)
        self.assertEqual(pipe.waiting(), 0)

    def test_a_different_transfer_under_an_id_in_flight_goes_its_own_way(self) -> None:
        request = wallet_pb2.TransferRequest
        pipe = Pipe("n:1")
        self.assertIsNotNone(pipe.send(request(transaction_id="c", amount="1.00")))
        self.assertIsNone(pipe.send(request(transaction_id="c", amount="2.00")))
        self.assertIsNotNone(pipe.send(request(transaction_id="c", amount="1.00")))
        self.assertEqual(pipe.waiting(), 2)

    def test_another_reference_or_metadata_under_an_id_in_flight_is_a_different_transfer(self) -> None:
        def request(reference: str = "r", **metadata: str) -> wallet_pb2.TransferRequest:
            return wallet_pb2.TransferRequest(transaction_id="c", amount="1.00", reference=reference, metadata=metadata)

        pipe = Pipe("n:1")
        self.assertIsNotNone(pipe.send(request(channel="web", note="ünïcode ✓")))
        self.assertIsNone(pipe.send(request(channel="app", note="ünïcode ✓")))
        self.assertIsNone(pipe.send(request(channel="web")))
        self.assertIsNone(pipe.send(request("other", channel="web", note="ünïcode ✓")))
        self.assertIsNotNone(pipe.send(request(note="ünïcode ✓", channel="web")))  # key order is no difference
        self.assertEqual(pipe.waiting(), 2)

    def test_the_asyncio_pipe_keeps_the_same_rule(self) -> None:
        async def run() -> None:
            pipe = AsyncPipe("n:1")
            request = wallet_pb2.TransferRequest
            self.assertIsNotNone(pipe.send(request(transaction_id="c", amount="1.00")))
            self.assertIsNone(pipe.send(request(transaction_id="c", amount="2.00")))
            self.assertIsNotNone(pipe.send(request(transaction_id="c", amount="1.00")))
            self.assertEqual(pipe.waiting(), 2)

        asyncio.run(run())

    def test_a_closed_or_full_pipe_takes_nothing_and_its_waiters_go_on_alone(self) -> None:
        pipe = Pipe("n:1")
        waiting = pipe.send(wallet_pb2.TransferRequest(transaction_id="w"))
        assert waiting is not None
        pipe.close()
        self.assertIs(pipe.wait(waiting, 5), FALLBACK)
        self.assertIsNone(pipe.send(wallet_pb2.TransferRequest(transaction_id="x")))
        self.assertTrue(pipe.closed)
        self.assertEqual(list(pipe.requests()), [])  # the unwritten request dropped, the iterator ends

        pipe = Pipe("n:1")
        waiters = [pipe.send(wallet_pb2.TransferRequest(transaction_id=str(n))) for n in range(PIPE_QUEUE_MAX)]
        self.assertTrue(all(w is not None for w in waiters))
        self.assertIsNone(pipe.send(wallet_pb2.TransferRequest(transaction_id="one-too-many")))
        self.assertEqual(pipe.waiting(), PIPE_QUEUE_MAX)
        # A caller that gives up is forgotten; its result is then ignored.
        first = waiters[0]
        assert first is not None
        self.assertIs(pipe.wait(first, 0), FALLBACK)
        self.assertIsNone(pipe.resolve(ok(wallet_pb2.TransferRequest(transaction_id="0"))))
        self.assertEqual(pipe.waiting(), PIPE_QUEUE_MAX - 1)
        pipe.close()

    def test_malformed_results_fall_back(self) -> None:
        request = wallet_pb2.TransferRequest(transaction_id="x")
        self.assertIs(result_outcome(request, wallet_pb2.TransferResult(transaction_id="y", status="success")), FALLBACK)
        self.assertIs(result_outcome(request, wallet_pb2.TransferResult(status="rejected")), FALLBACK)
        self.assertIs(result_outcome(request, wallet_pb2.TransferResult(status="what")), FALLBACK)
        retryable = rejected(request, grpc.StatusCode.UNAVAILABLE, "NOT_LEADER")
        self.assertIs(result_outcome(request, retryable), FALLBACK)
        no_field = result_outcome(request, rejected(request, grpc.StatusCode.ALREADY_EXISTS, "TRANSACTION_ID_REUSED"))
        assert isinstance(no_field, Rejected)
        self.assertIsNone(no_field.field)


if __name__ == "__main__":
    unittest.main()
