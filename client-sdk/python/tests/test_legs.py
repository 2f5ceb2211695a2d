"""Unit tests of ``transfer_legs`` (``TransferLegs``, multi-leg transfers) of both clients
against an in-process node: the request carries the legs in order (each leg's accounts,
amount as a decimal string and currency), the reference and metadata; it goes to the node
leading the first leg's ``from_account``; a transaction id the client makes is a UUID, kept on
every retry (UNAVAILABLE: the same request again) and handed back on the response and on the
error; a refusal exposes the ``leg`` of its ErrorInfo metadata and is not retried; the four
reasons of TransferLegs are in ``REASONS``."""

from __future__ import annotations

import asyncio
import dataclasses
import unittest
import uuid
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from fake_node import FakeNode, _Status, abort
from wallet_ledger import (
    METADATA_LEG,
    REASONS,
    AsyncWalletClient,
    Indefinite,
    Leg,
    Rejected,
    RetryPolicy,
    WalletClient,
    new_transaction_id,
    new_transfer_legs_request,
    wallet_pb2,
)
from wallet_ledger.auth import NO_FORWARD_METADATA_KEY

FAST = RetryPolicy(call_timeout=2.0, total_deadline=4.0, attempts_max=3, backoff_base=0.001, backoff_max=0.004)
LEGS = [
    Leg("alice", "bob", "30.00", "USD"),
    Leg("alice", "carol", "20.00", "USD"),
    Leg("bob", "dave", "10.5", "USD"),
]


def legs_of(request: wallet_pb2.TransferLegsRequest) -> list[tuple[str, str, str, str]]:
    return [(leg.from_account, leg.to_account, leg.amount, leg.currency) for leg in request.legs]


def not_leader(leader: str) -> Any:
    """A TransferLegs handler answering NOT_LEADER with ``leader`` as the hint."""

    def handle(request: wallet_pb2.TransferLegsRequest, context: grpc.ServicerContext) -> wallet_pb2.TransferResponse:
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


def unavailable_first(times: int) -> Any:
    """A TransferLegs handler answering UNAVAILABLE (outcome unknown) ``times`` times, then
    success (replayed, as a node that had applied the first attempt would)."""
    calls = [0]

    def handle(request: wallet_pb2.TransferLegsRequest, context: grpc.ServicerContext) -> wallet_pb2.TransferResponse:
        calls[0] += 1
        if calls[0] <= times:
            abort(context, grpc.StatusCode.UNAVAILABLE, "OUTCOME_UNKNOWN", "leadership changed")
        return wallet_pb2.TransferResponse(
            status="success", transaction_id=request.transaction_id, consistency_token="legs", replayed=True
        )

    return handle


def insufficient_funds(request: wallet_pb2.TransferLegsRequest, context: grpc.ServicerContext) -> wallet_pb2.TransferResponse:
    abort(context, grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", "leg 2: not enough", {METADATA_LEG: "2"})
    raise AssertionError("unreachable")


def refusing_with_leg(value: str) -> Any:
    """A TransferLegs handler refusing with ErrorInfo metadata ``leg`` = ``value``."""

    def handle(request: wallet_pb2.TransferLegsRequest, context: grpc.ServicerContext) -> wallet_pb2.TransferResponse:
        abort(context, grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", "no", {METADATA_LEG: value})
        raise AssertionError("unreachable")

    return handle


def repeated_leg(request: wallet_pb2.TransferLegsRequest, context: grpc.ServicerContext) -> wallet_pb2.TransferResponse:
    abort(context, grpc.StatusCode.INVALID_ARGUMENT, "REPEATED_LEG", "merge them")
    raise AssertionError("unreachable")


class TransferLegsTest(unittest.TestCase):
    def test_the_request_carries_the_legs_in_order_and_follows_the_leader_of_the_first_source(self) -> None:
        with FakeNode() as follower, FakeNode() as leader:
            follower.legs_handler = not_leader(leader.endpoint)
            tx = new_transaction_id()
            legs: list[Any] = [
                LEGS[0],
                {"from_account": "alice", "to_account": "carol", "amount": "20.00", "currency": "USD"},
                wallet_pb2.TransferLeg(from_account="bob", to_account="dave", amount="10.5", currency="USD"),
                ("carol", "erin", "0.01", "USD"),
            ]
            metadata = {"channel": "sdk-python", "note": "ünïcode ✓"}
            with WalletClient([follower.endpoint, leader.endpoint], FAST) as wallet:
                done = wallet.transfer_legs(legs, transaction_id=tx, reference="order-7", metadata=metadata)
                self.assertEqual((done.status, done.transaction_id, done.consistency_token), ("success", tx, "legs"))
                self.assertFalse(done.replayed)
                self.assertEqual(wallet.leader("alice"), leader.endpoint)  # the first leg's source
                wallet.transfer_legs(legs=[LEGS[0]], transaction_id=new_transaction_id())  # keyword legs, no annotations
            metadata["note"] = "changed afterwards"
            self.assertEqual(len(follower.legs_requests), 1)  # then straight to the known leader
            self.assertEqual([r.transaction_id for r in leader.legs_requests][0], tx)
            sent = leader.legs_requests[0]
            self.assertEqual(
                legs_of(sent),
                [
                    ("alice", "bob", "30.00", "USD"),
                    ("alice", "carol", "20.00", "USD"),
                    ("bob", "dave", "10.5", "USD"),
                    ("carol", "erin", "0.01", "USD"),
                ],
            )
            self.assertEqual(sent, follower.legs_requests[0])  # a redirect sends the same request
            self.assertEqual((sent.reference, dict(sent.metadata)), ("order-7", {"channel": "sdk-python", "note": "ünïcode ✓"}))
            plain = leader.legs_requests[1]
            self.assertEqual((plain.reference, dict(plain.metadata)), ("", {}))
            for metadata_sent in follower.metadata + leader.metadata:
                self.assertEqual(metadata_sent.get(NO_FORWARD_METADATA_KEY), "sdk")

    def test_new_transfer_legs_request(self) -> None:
        request = new_transfer_legs_request("t", iter(LEGS), "ref", {"k": "v"})
        self.assertEqual(request.transaction_id, "t")
        self.assertEqual(legs_of(request), [tuple(leg) for leg in LEGS])
        self.assertEqual((request.reference, dict(request.metadata)), ("ref", {"k": "v"}))
        with self.assertRaises(TypeError):
            new_transfer_legs_request("t", [42])  # type: ignore[list-item]
        with self.assertRaises(TypeError):
            new_transfer_legs_request("t", LEGS, metadata=[("k", "v")])  # type: ignore[arg-type]

    def test_a_generated_transaction_id_is_a_uuid_kept_on_every_retry(self) -> None:
        with FakeNode() as node:
            node.legs_handler = unavailable_first(2)
            with WalletClient([node.endpoint], FAST) as wallet:
                done = wallet.transfer_legs(LEGS, reference="r")
        ids = [r.transaction_id for r in node.legs_requests]
        self.assertEqual(len(ids), 3)
        self.assertEqual(len(set(ids)), 1, ids)
        generated = uuid.UUID(ids[0])
        self.assertEqual((str(generated), generated.version), (ids[0], 4))
        self.assertEqual(done.transaction_id, ids[0])
        self.assertTrue(done.replayed)
        self.assertTrue(all(r == node.legs_requests[0] for r in node.legs_requests))  # the same request each time
        # A given id is sent as it is; two calls without one get two ids.
        with FakeNode() as node, WalletClient([node.endpoint], FAST) as wallet:
            wallet.transfer_legs(LEGS)
            wallet.transfer_legs(LEGS)
            wallet.transfer_legs(LEGS, transaction_id="mine")
        self.assertEqual(len({r.transaction_id for r in node.legs_requests}), 3)
        self.assertEqual(node.legs_requests[2].transaction_id, "mine")

    def test_an_unknown_outcome_after_the_retries_carries_the_generated_id(self) -> None:
        with FakeNode() as node:
            node.legs_handler = unavailable_first(100)
            with WalletClient([node.endpoint], FAST) as wallet:
                with self.assertRaises(Indefinite) as caught:
                    wallet.transfer_legs(LEGS)
        self.assertEqual(len(node.legs_requests), FAST.attempts_max)
        self.assertEqual(caught.exception.transaction_id, node.legs_requests[0].transaction_id)
        self.assertEqual(caught.exception.reason, "OUTCOME_UNKNOWN")

    def test_a_refusal_names_its_leg_and_is_not_retried(self) -> None:
        with FakeNode() as node:
            node.legs_handler = insufficient_funds
            with WalletClient([node.endpoint], FAST) as wallet:
                with self.assertRaises(Rejected) as caught:
                    wallet.transfer_legs(LEGS)
                node.legs_handler = repeated_leg
                with self.assertRaises(Rejected) as whole:
                    wallet.transfer_legs([LEGS[0], LEGS[0]], transaction_id="t")
        error = caught.exception
        self.assertEqual((error.code, error.reason, error.leg), (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS", 2))
        self.assertEqual(error.details.metadata[METADATA_LEG], "2")
        self.assertEqual(error.transaction_id, node.legs_requests[0].transaction_id)
        self.assertTrue(error.definite)
        self.assertEqual((whole.exception.reason, whole.exception.leg, whole.exception.transaction_id), ("REPEATED_LEG", None, "t"))
        self.assertEqual(len(node.legs_requests), 2)  # definite: each sent once

    def test_leg_ignores_what_is_not_an_index(self) -> None:
        for value, want in (("0", 0), ("17", 17), ("", None), ("-1", None), ("x", None)):
            with FakeNode() as node:
                node.legs_handler = refusing_with_leg(value)
                with WalletClient([node.endpoint], FAST) as wallet, self.assertRaises(Rejected) as caught:
                    wallet.transfer_legs(LEGS)
            self.assertEqual(caught.exception.leg, want, value)

    def test_the_reasons_of_transfer_legs_are_known(self) -> None:
        for reason in ("LEGS_OUT_OF_RANGE", "REPEATED_LEG", "MIXED_CURRENCIES", "LEGS_SPAN_PARTITIONS"):
            self.assertIn(reason, REASONS)

    def test_asyncio_client(self) -> None:
        async def run(endpoints: list[str]) -> tuple[wallet_pb2.TransferResponse, Rejected]:
            # NOT_LEADER, then UNAVAILABLE at the leader, then the follower again (the next
            # endpoint after a failure), its hint, and the leader's success: 4 attempts.
            async with AsyncWalletClient(endpoints, dataclasses.replace(FAST, attempts_max=5)) as wallet:
                done = await wallet.transfer_legs(LEGS, reference="order-8", metadata={"k": "v"})
                assert wallet.leader("alice") == node.endpoint
                node.legs_handler = insufficient_funds
                try:
                    await wallet.transfer_legs(LEGS, transaction_id="t2")
                except Rejected as error:
                    return done, error
                raise AssertionError("transfer_legs did not fail")

        with FakeNode() as follower, FakeNode() as node:
            follower.legs_handler = not_leader(node.endpoint)
            node.legs_handler = unavailable_first(1)
            done, error = asyncio.run(run([follower.endpoint, node.endpoint]))
        first = node.legs_requests[0]
        self.assertEqual(uuid.UUID(first.transaction_id).version, 4)
        self.assertEqual([r.transaction_id for r in node.legs_requests], [first.transaction_id] * 2 + ["t2"])
        self.assertEqual([r.transaction_id for r in follower.legs_requests], [first.transaction_id] * 2)
        self.assertEqual(done.transaction_id, first.transaction_id)
        self.assertEqual(legs_of(first), [tuple(leg) for leg in LEGS])
        self.assertEqual((first.reference, dict(first.metadata)), ("order-8", {"k": "v"}))
        self.assertEqual((error.reason, error.leg, error.transaction_id), ("INSUFFICIENT_FUNDS", 2, "t2"))
        for metadata in follower.metadata + node.metadata:
            self.assertEqual(metadata.get(NO_FORWARD_METADATA_KEY), "sdk")


if __name__ == "__main__":
    unittest.main()
