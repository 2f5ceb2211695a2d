"""Opens three accounts, funds one, pays another, retries that payment with the same
transaction_id (it is not paid twice), and watches both balances change on a read node.

    python examples/transfer_and_watch.py \
        --write 127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053 --read 127.0.0.1:50061

(after ``pip install client-sdk/python``; from a checkout, ``PYTHONPATH=src`` does too). The
last line printed is a JSON summary (the SDK tests check it).
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
import uuid


from wallet_ledger import QueryClient, Rejected, WalletClient, WalletError, new_transaction_id, query_pb2

WATCH_WAIT_SECONDS = 20.0


def wait_known(query: QueryClient, account_id: str) -> None:
    """A read node learns an account once it has folded its opening: wait (bounded)."""
    deadline = time.monotonic() + WATCH_WAIT_SECONDS
    while True:
        try:
            query.get_balance(account_id)
            return
        except Rejected as error:
            if error.reason != "ACCOUNT_NOT_FOUND" or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", default="127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053")
    parser.add_argument("--read", default="127.0.0.1:50061")
    parser.add_argument("--prefix", default=f"py-{uuid.uuid4().hex[:8]}-")
    args = parser.parse_args()
    issuer, alice, bob = (args.prefix + name for name in ("issuer", "alice", "bob"))

    with WalletClient(args.write.split(",")) as wallet, QueryClient([args.read]) as query:
        wallet.open_account(issuer, "USD", allow_negative_balance=True)
        wallet.open_account(alice, "USD")
        wallet.open_account(bob, "USD")
        for account in (alice, bob):
            wait_known(query, account)

        # Watch first: the current balances arrive, then every change as it is applied.
        watch = query.watch_balances([alice, bob], timeout=WATCH_WAIT_SECONDS * 2)
        # It resumes by itself after a disconnect (the next read node given, each account
        # after the last sequence delivered); cancel() ends the iteration quietly.
        updates: "queue.Queue[query_pb2.BalanceUpdate | WalletError]" = queue.Queue()

        def pump() -> None:
            try:
                for update in watch:
                    updates.put(update)
            except WalletError as error:
                updates.put(error)

        threading.Thread(target=pump, daemon=True).start()

        wallet.transfer(
            transaction_id=new_transaction_id(),
            from_account=issuer,
            to_account=alice,
            amount="100.00",
            currency="USD",
        )
        payment = dict(
            transaction_id=new_transaction_id(),
            from_account=alice,
            to_account=bob,
            amount="30.25",
            currency="USD",
        )
        paid = wallet.transfer(**payment)
        # A retry (say, after a timeout) reuses the id and gets the original outcome back.
        again = wallet.transfer(**payment)
        payment_id = payment["transaction_id"]
        assert again.transaction_id == paid.transaction_id == payment_id

        watched: list[str] = []
        latest: dict[str, str] = {}
        deadline = time.monotonic() + WATCH_WAIT_SECONDS
        while latest.get(alice) != "69.75" or latest.get(bob) != "30.25":
            update = updates.get(timeout=max(deadline - time.monotonic(), 0.01))
            if isinstance(update, WalletError):
                raise update
            balance = update.balance
            latest[balance.account_id] = balance.balance
            kind = "snapshot" if update.snapshot else f"change {update.delta}"
            name = balance.account_id[len(args.prefix) :]
            watched.append(f"{name} #{balance.sequence} {kind} -> {balance.balance}")
            print(f"watch: {watched[-1]}")
        watch.cancel()

        # Read-your-writes: the token names the payment's log positions.
        projected = {
            name: query.get_balance(account, paid.consistency_token).balance.balance
            for name, account in (("alice", alice), ("bob", bob))
        }
        authoritative = {
            name: wallet.get_account(account).account.balance
            for name, account in (("alice", alice), ("bob", bob))
        }
        print(
            json.dumps(
                {
                    "authoritative": authoritative,
                    "projected": projected,
                    "watched": watched,
                    "retry_same_outcome": again.consistency_token == paid.consistency_token,
                }
            )
        )


if __name__ == "__main__":
    main()
