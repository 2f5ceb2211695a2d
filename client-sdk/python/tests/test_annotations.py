"""Unit tests of a transfer's optional ``reference`` and ``metadata``, against an in-process
node: ``transfer()`` (pipelined and unary), ``transfer_batch()``, ``authorize_transfer()`` and
their asyncio twins put them in the request, leave them empty when not given, and
``get_transfer()`` hands back what the node answers. Also the read node's new fields: a
``TransferUpdate`` carries ``status`` (``wallet_pb2.TransferStatus``), ``reference`` and
``metadata``, passed through ``watch_transfer`` as they come.

An account's ``reference`` and ``metadata`` likewise: ``open_account()`` and ``open_accounts()``
(streamed, and an item the stream answers "unavailable" retried alone) and their asyncio twins
send them; the ``Account`` answered and ``get_account()`` carry them, and so does the read
node's ``Balance`` (``get_balance()``, ``watch_balances()``)."""

from __future__ import annotations

import asyncio
import datetime
import unittest

from fake_node import FakeNode
from fake_read_node import FakeReadNode, balance
from wallet_ledger import (
    REASONS,
    AsyncWalletClient,
    QueryClient,
    RetryPolicy,
    WalletClient,
    new_transaction_id,
    query_pb2,
    wallet_pb2,
)

FAST = RetryPolicy(call_timeout=2.0, total_deadline=4.0, attempts_max=3, backoff_base=0.001, backoff_max=0.004)
METADATA = {"channel": "sdk-python", "note": "ünïcode ✓"}


class AnnotationsTest(unittest.TestCase):
    def test_transfer_sends_reference_and_metadata_pipelined_and_unary(self) -> None:
        for pipelined in (True, False):
            with self.subTest(pipelined=pipelined), FakeNode() as node:
                tx, plain = new_transaction_id(), new_transaction_id()
                with WalletClient([node.endpoint], FAST, pipeline_transfers=pipelined) as wallet:
                    wallet.transfer(
                        transaction_id=tx, from_account="a", to_account="b", amount="1.00", currency="USD",
                        reference="order-42", metadata=METADATA,
                    )
                    wallet.transfer(transaction_id=plain, from_account="a", to_account="b", amount="1.00", currency="USD")
                    got = wallet.get_transfer(tx)
                self.assertEqual(node.streams != [], pipelined)  # the path under test was taken
                sent, bare = node.transfer_requests
                self.assertEqual((sent.transaction_id, sent.reference, dict(sent.metadata)), (tx, "order-42", METADATA))
                self.assertEqual((bare.transaction_id, bare.reference, dict(bare.metadata)), (plain, "", {}))
                self.assertEqual((got.reference, dict(got.metadata)), ("order-42", METADATA))

    def test_batch_items_carry_their_own_annotations(self) -> None:
        with FakeNode() as node, WalletClient([node.endpoint], FAST) as wallet:
            items = [
                dict(transaction_id="t1", from_account="a", to_account="b", amount="1.00", currency="USD",
                     reference="r1", metadata={"k": "v1"}),
                wallet_pb2.TransferRequest(transaction_id="t2", from_account="a", to_account="b", amount="2.00",
                                           currency="USD", reference="r2"),
            ]
            outcomes = wallet.transfer_batch(items)
        self.assertTrue(all(isinstance(o, wallet_pb2.TransferResponse) for o in outcomes), outcomes)
        self.assertEqual(
            [(r.transaction_id, r.reference, dict(r.metadata)) for r in node.transfer_requests],
            [("t1", "r1", {"k": "v1"}), ("t2", "r2", {})],
        )

    def test_authorize_sends_reference_and_metadata(self) -> None:
        with FakeNode() as node, WalletClient([node.endpoint], FAST) as wallet:
            wallet.authorize_transfer(
                transaction_id="h1", from_account="a", to_account="b", amount="5.00", currency="USD",
                timeout=datetime.timedelta(minutes=1), reference="inv-7", metadata={"channel": "pos"},
            )
            wallet.authorize_transfer(
                transaction_id="h2", from_account="a", to_account="b", amount="5.00", currency="USD",
                timeout=datetime.timedelta(minutes=1),
            )
        (_, with_annotations), (_, without) = node.holds
        self.assertEqual((with_annotations.reference, dict(with_annotations.metadata)), ("inv-7", {"channel": "pos"}))
        self.assertEqual((without.reference, dict(without.metadata)), ("", {}))

    def test_metadata_must_be_a_mapping(self) -> None:
        with FakeNode() as node, WalletClient([node.endpoint], FAST) as wallet:
            with self.assertRaises(TypeError):
                wallet.transfer(
                    transaction_id="t", from_account="a", to_account="b", amount="1", currency="USD",
                    metadata=[("k", "v")],  # type: ignore[arg-type]
                )
        self.assertEqual(node.transfer_requests, [])  # refused before anything was sent

    def test_asyncio_client(self) -> None:
        async def run(endpoint: str) -> wallet_pb2.Transfer:
            async with AsyncWalletClient([endpoint], FAST) as wallet:
                await asyncio.gather(
                    wallet.transfer(transaction_id="t1", from_account="a", to_account="b", amount="1.00",
                                    currency="USD", reference="order-1", metadata=METADATA),
                    wallet.authorize_transfer(transaction_id="h1", from_account="a", to_account="b", amount="1.00",
                                              currency="USD", timeout=datetime.timedelta(seconds=30),
                                              reference="order-2", metadata={"n": "2"}),
                )
                return await wallet.get_transfer("t1")

        with FakeNode() as node:
            got = asyncio.run(run(node.endpoint))
        (sent,) = node.transfer_requests
        self.assertEqual((sent.reference, dict(sent.metadata)), ("order-1", METADATA))
        self.assertEqual((got.reference, dict(got.metadata)), ("order-1", METADATA))
        ((_, hold),) = node.holds
        self.assertEqual((hold.reference, dict(hold.metadata)), ("order-2", {"n": "2"}))

    def test_watch_and_history_pass_status_and_annotations_through(self) -> None:
        update = query_pb2.TransferUpdate(
            transaction_id="t1", version=1, is_final=True,
            state=query_pb2.TRANSFER_STATE_COMPLETED, status=wallet_pb2.TRANSFER_STATUS_COMPLETED,
            reference="order-9", metadata={"channel": "web"},
        )
        with FakeReadNode(transfer_watches=[[update]]) as read, QueryClient([read.endpoint], FAST) as query:
            (got,) = list(query.watch_transfer("t1", timeout=5))
            history = list(query.iter_transfers("h"))
        self.assertEqual(got.status, wallet_pb2.TRANSFER_STATUS_COMPLETED)
        self.assertEqual((got.reference, dict(got.metadata)), ("order-9", {"channel": "web"}))
        self.assertEqual([(e.reference, dict(e.metadata)) for e in history][:2], [("ref-5", {"seq": "5"}), ("ref-4", {"seq": "4"})])

    def test_the_new_reasons_are_known(self) -> None:
        self.assertLessEqual({"INVALID_REFERENCE", "INVALID_METADATA"}, REASONS)


ACCOUNT_METADATA = {"tier": "gold", "region": "eu"}


def reference_and_metadata(
    message: wallet_pb2.OpenAccountRequest | wallet_pb2.Account | query_pb2.Balance,
) -> tuple[str, dict[str, str]]:
    return message.reference, dict(message.metadata)


class AccountAnnotationsTest(unittest.TestCase):
    def test_open_account_sends_them_and_the_account_carries_them(self) -> None:
        with FakeNode() as node, WalletClient([node.endpoint], FAST) as wallet:
            metadata = dict(ACCOUNT_METADATA)
            opened = wallet.open_account("cust", "USD", reference="cust-42", metadata=metadata)
            metadata["tier"] = "changed after the call"  # the request had its own copy
            plain = wallet.open_account("plain", "USD", allow_negative_balance=True)
            got = wallet.get_account("cust").account
            bare = wallet.get_account("plain").account
        (how, sent), (_, sent_plain) = node.open_requests
        self.assertEqual((how, sent.account_id, sent.currency), ("unary", "cust", "USD"))
        self.assertEqual(reference_and_metadata(sent), ("cust-42", ACCOUNT_METADATA))
        self.assertEqual((sent_plain.allow_negative_balance, *reference_and_metadata(sent_plain)), (True, "", {}))
        self.assertEqual(reference_and_metadata(opened), ("cust-42", ACCOUNT_METADATA))
        self.assertEqual(reference_and_metadata(got), ("cust-42", ACCOUNT_METADATA))
        self.assertEqual((reference_and_metadata(plain), reference_and_metadata(bare)), (("", {}), ("", {})))

    def test_open_accounts_items_carry_their_own_also_when_retried_alone(self) -> None:
        with FakeNode() as node, WalletClient([node.endpoint], FAST) as wallet:
            node.open_unavailable = {"elsewhere"}
            outcomes = wallet.open_accounts([
                dict(account_id="a1", currency="USD", reference="r1", metadata={"k": "v1"}),
                wallet_pb2.OpenAccountRequest(account_id="a2", currency="USD", reference="r2"),
                dict(account_id="elsewhere", currency="EUR", reference="r3", metadata={"k": "v3"}),
                dict(account_id="a4", currency="USD"),
            ])
        self.assertEqual(
            [(how, r.account_id, *reference_and_metadata(r)) for how, r in node.open_requests],
            [("stream", "a1", "r1", {"k": "v1"}), ("stream", "a2", "r2", {}), ("stream", "a4", "", {}),
             ("unary", "elsewhere", "r3", {"k": "v3"})],
        )
        accounts = [o for o in outcomes if isinstance(o, wallet_pb2.Account)]
        self.assertEqual(len(accounts), 4, outcomes)
        self.assertEqual(
            [(a.account_id, *reference_and_metadata(a)) for a in accounts],
            [("a1", "r1", {"k": "v1"}), ("a2", "r2", {}), ("elsewhere", "r3", {"k": "v3"}), ("a4", "", {})],
        )

    def test_open_account_metadata_must_be_a_mapping(self) -> None:
        with FakeNode() as node, WalletClient([node.endpoint], FAST) as wallet:
            with self.assertRaises(TypeError):
                wallet.open_account("a", "USD", metadata=[("k", "v")])  # type: ignore[arg-type]
        self.assertEqual(node.open_requests, [])  # refused before anything was sent

    def test_asyncio_open_account_and_open_accounts(self) -> None:
        async def run(endpoint: str) -> tuple[wallet_pb2.Account, list[object], wallet_pb2.Account]:
            async with AsyncWalletClient([endpoint], FAST) as wallet:
                opened = await wallet.open_account("cust", "USD", reference="cust-42", metadata=ACCOUNT_METADATA)
                many = await wallet.open_accounts([
                    dict(account_id="elsewhere", currency="USD", reference="r1", metadata={"k": "v1"}),
                ])
                return opened, list(many), (await wallet.get_account("cust")).account

        with FakeNode() as node:
            node.open_unavailable = {"elsewhere"}
            opened, many, got = asyncio.run(run(node.endpoint))
        self.assertEqual(
            [(how, r.account_id, *reference_and_metadata(r)) for how, r in node.open_requests],
            [("unary", "cust", "cust-42", ACCOUNT_METADATA), ("unary", "elsewhere", "r1", {"k": "v1"})],
        )
        self.assertEqual((reference_and_metadata(opened), reference_and_metadata(got)), (("cust-42", ACCOUNT_METADATA),) * 2)
        (retried,) = many
        assert isinstance(retried, wallet_pb2.Account), retried
        self.assertEqual(reference_and_metadata(retried), ("r1", {"k": "v1"}))

    def test_the_read_nodes_balances_carry_them(self) -> None:
        annotated = balance("cust", 1, snapshot=True)
        annotated.balance.reference = "cust-42"
        annotated.balance.metadata.update(ACCOUNT_METADATA)
        with FakeReadNode(watches=[[annotated]]) as read, QueryClient([read.endpoint], FAST) as query:
            read.balances = {"cust": annotated.balance, "plain": balance("plain", 1).balance}
            got = query.get_balance("cust", "tok").balance
            bare = query.get_balance("plain").balance
            watch = query.watch_balances(["cust"], timeout=5)
            update = next(iter(watch))
            watch.cancel()
        self.assertEqual([(r.account_id, r.consistency_token) for r in read.balance_requests], [("cust", "tok"), ("plain", "")])
        self.assertEqual(reference_and_metadata(got), ("cust-42", ACCOUNT_METADATA))
        self.assertEqual(reference_and_metadata(bare), ("", {}))
        self.assertEqual(reference_and_metadata(update.balance), ("cust-42", ACCOUNT_METADATA))


if __name__ == "__main__":
    unittest.main()
