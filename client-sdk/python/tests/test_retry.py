"""Unit tests of the retry loop and the error decoding, without a cluster."""

from __future__ import annotations

import unittest
from typing import Optional

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from wallet_ledger import (
    Indefinite,
    Rejected,
    RetryPolicy,
    backoff_ceiling,
    call_with_retry,
    error_details,
    full_jitter,
)


class FakeRpcError(grpc.RpcError, grpc.Call):
    """A failed call as grpcio raises it, with a rich status in the trailers."""

    def __init__(self, code: grpc.StatusCode, message: str, details: list = (), with_status=True):
        self._code, self._message = code, message
        self._trailers: tuple = ()
        if with_status:
            status = status_pb2.Status(code=code.value[0], message=message)
            for detail in details:
                packed = any_pb2.Any()
                packed.Pack(detail)
                status.details.append(packed)
            self._trailers = (("grpc-status-details-bin", status.SerializeToString()),)

    def code(self):
        return self._code

    def details(self):
        return self._message

    def trailing_metadata(self):
        return self._trailers

    def initial_metadata(self):
        return ()

    def is_active(self):
        return False

    def time_remaining(self):
        return None

    def cancel(self):
        return False

    def add_callback(self, callback):
        return False


def info(reason: str, **metadata: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain="wallet.ledger", metadata=metadata)


FAST = RetryPolicy(call_timeout=0.5, total_deadline=2.0, attempts_max=5, backoff_base=0.001, backoff_max=0.004)


class Recorder:
    """A `send` that fails with the given errors in turn, then answers "ok"; records calls."""

    def __init__(self, *errors: Optional[Exception], request: object = None):
        self.errors = list(errors)
        self.request = request if request is not None else object()
        self.calls: list[tuple[str, object]] = []

    def __call__(self, endpoint: str, timeout: float) -> str:
        assert 0 < timeout <= FAST.call_timeout
        self.calls.append((endpoint, self.request))
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class BackoffTest(unittest.TestCase):
    def test_ceiling_doubles_then_caps(self):
        self.assertAlmostEqual(backoff_ceiling(0, 0.02, 1.0), 0.02)
        self.assertAlmostEqual(backoff_ceiling(1, 0.02, 1.0), 0.04)
        self.assertAlmostEqual(backoff_ceiling(5, 0.02, 1.0), 0.64)
        self.assertEqual(backoff_ceiling(6, 0.02, 1.0), 1.0)
        self.assertEqual(backoff_ceiling(10_000, 0.02, 1.0), 1.0)

    def test_full_jitter_is_bounded_and_spread(self):
        samples = [full_jitter(10, 0.02, 1.0) for _ in range(500)]
        self.assertTrue(all(0 <= s <= 1.0 for s in samples))
        self.assertTrue(any(s < 0.5 for s in samples) and any(s > 0.5 for s in samples))


class RetryTest(unittest.TestCase):
    def test_unknown_outcomes_are_retried_with_the_same_request(self):
        send = Recorder(
            FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused", with_status=False),
            FakeRpcError(grpc.StatusCode.UNAVAILABLE, "no leader", [info("NO_LEADER")]),
            FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "slow", with_status=False),
        )
        self.assertEqual(call_with_retry(send, ["a:1", "b:1", "c:1"], FAST), "ok")
        self.assertEqual([e for e, _ in send.calls], ["a:1", "b:1", "c:1", "a:1"])
        self.assertTrue(all(request is send.request for _, request in send.calls))

    def test_not_leader_hint_is_followed_at_once(self):
        sleeps: list[float] = []
        send = Recorder(
            FakeRpcError(
                grpc.StatusCode.UNAVAILABLE,
                "not the leader",
                [info("NOT_LEADER", leader_id="3", leader_address="c:1")],
            )
        )
        call_with_retry(send, ["a:1", "b:1", "c:1"], FAST, sleep=sleeps.append)
        self.assertEqual([e for e, _ in send.calls], ["a:1", "c:1"])
        self.assertEqual(sleeps, [])

    def test_definite_errors_are_not_retried(self):
        for code, reason in [
            (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_AMOUNT"),
            (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND"),
            (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS"),
            (grpc.StatusCode.ALREADY_EXISTS, "TRANSACTION_ID_REUSED"),
            (grpc.StatusCode.UNKNOWN, "UNKNOWN"),
        ]:
            send = Recorder(FakeRpcError(code, "no", [info(reason)]))
            with self.assertRaises(Rejected) as caught:
                call_with_retry(send, ["a:1"], FAST)
            self.assertEqual(len(send.calls), 1)
            self.assertEqual((caught.exception.code, caught.exception.reason), (code, reason))
            self.assertTrue(caught.exception.definite)

    def test_attempts_are_bounded(self):
        down = [FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down", with_status=False)] * 20
        send = Recorder(*down)
        with self.assertRaises(Indefinite) as caught:
            call_with_retry(send, ["a:1", "b:1"], FAST)
        self.assertEqual(len(send.calls), FAST.attempts_max)
        self.assertEqual(caught.exception.reason, "TRANSPORT_ERROR")
        self.assertFalse(caught.exception.definite)

    def test_total_deadline_is_bounded(self):
        now = [0.0]
        overloaded = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1))
        errors = [
            FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", [info("OVERLOADED"), overloaded])
        ] * 20
        send = Recorder(*errors)

        def sleep(seconds: float) -> None:
            self.assertGreaterEqual(seconds, 1.0)  # RetryInfo is a floor on the pause
            now[0] += seconds

        with self.assertRaises(Indefinite) as caught:
            call_with_retry(send, ["a:1"], FAST, sleep=sleep, clock=lambda: now[0])
        self.assertEqual(caught.exception.reason, "OVERLOADED")
        self.assertLess(now[0], FAST.total_deadline)
        self.assertEqual(len(send.calls), 2)


class DecodeTest(unittest.TestCase):
    def test_bad_request_and_error_info_decode(self):
        error = FakeRpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "amount: not a decimal",
            [
                info("INVALID_AMOUNT"),
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field="amount", description="x")
                    ]
                ),
            ],
        )
        details = error_details(error)
        self.assertEqual(details.reason, "INVALID_AMOUNT")
        self.assertEqual(details.domain, "wallet.ledger")
        self.assertEqual(details.field_violations, [("amount", "x")])
        self.assertEqual(code_pb2.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT.value[0])


if __name__ == "__main__":
    unittest.main()
