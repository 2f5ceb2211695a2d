"""The harness side of the kill -9 watch check (client-sdk/test-sdks.sh), through the Python
SDK: ``open`` opens an issuer and an account and waits until the read node knows the
account; ``pay`` moves 1.00 from the issuer into the account ``--count`` times.

    python tests/watch_feed.py open --write E,E,E --read R --account acct
    python tests/watch_feed.py pay --write E,E,E --account acct --count 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from wallet_ledger import QueryClient, Rejected, WalletClient, new_transaction_id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["open", "pay"])
    parser.add_argument("--write", required=True)
    parser.add_argument("--read", default="")
    parser.add_argument("--account", required=True)
    parser.add_argument("--count", type=int, default=1)
    args = parser.parse_args()
    issuer = args.account + "-issuer"
    with WalletClient(args.write.split(",")) as wallet:
        if args.command == "open":
            wallet.open_account(issuer, "USD", allow_negative_balance=True)
            wallet.open_account(args.account, "USD")
            with QueryClient(args.read.split(",")) as query:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        query.get_balance(args.account)
                        return
                    except Rejected:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
        for _ in range(args.count):
            wallet.transfer(
                transaction_id=new_transaction_id(),
                from_account=issuer,
                to_account=args.account,
                amount="1.00",
                currency="USD",
            )


if __name__ == "__main__":
    main()
    # Exit without the interpreter's final garbage collection: with grpcio 1.85 a stream
    # call's __del__ can wait forever there on a lock its (daemon) reader thread held when
    # the interpreter stopped it (seen once in CI, after every transfer was made; see the
    # session note of 2026-12-06). The work is done and flushed; nothing else to clean up.
    sys.stdout.flush()
    os._exit(0)
