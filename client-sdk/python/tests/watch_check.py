"""The watch that survives a read node's kill -9 (client-sdk/test-sdks.sh): watches one
account's balance, prints ``ready`` once the snapshot arrived, then the sequence of each
update, and exits 0 once it has seen ``--updates`` updates after the snapshot whose sequences
follow it strictly consecutively (no gap, no repeat); 1 otherwise or after ``--deadline``
seconds. The watch resumes by itself while the harness kills and restarts the read node.

    python tests/watch_check.py --read 127.0.0.1:50061 --account acct --updates 6
"""

from __future__ import annotations

import argparse
import sys
import threading

from wallet_ledger import QueryClient, WalletError


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--read", required=True, help="read endpoints, comma-separated")
    parser.add_argument("--account", required=True)
    parser.add_argument("--updates", type=int, default=6)
    parser.add_argument("--deadline", type=float, default=120.0)
    args = parser.parse_args()

    with QueryClient(args.read.split(",")) as query:
        watch = query.watch_balances([args.account], timeout=args.deadline)
        timer = threading.Timer(args.deadline, watch.cancel)
        timer.daemon = True
        timer.start()
        last = None
        seen = 0
        try:
            for update in watch:
                sequence = update.balance.sequence
                if last is None:
                    if not update.snapshot:
                        print(f"first update #{sequence} is not a snapshot", file=sys.stderr)
                        return 1
                    print("ready", flush=True)
                else:
                    print(sequence, flush=True)
                    if sequence != last + 1:
                        print(f"sequence {sequence} after {last}: a gap or a repeat", file=sys.stderr)
                        return 1
                    seen += 1
                    if seen == args.updates:
                        print(f"watch: {seen} updates after the snapshot, consecutive, {watch.resumes} resumes", file=sys.stderr)
                        return 0
                last = sequence
        except WalletError as error:
            print(f"watch failed: {error}", file=sys.stderr)
            return 1
        finally:
            timer.cancel()
            watch.cancel()
    print(f"watch ended after {seen} of {args.updates} updates (deadline)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
