"""Closed-loop throughput of ``WalletClient.transfer()``, with pipelining on and off.

N threads share one client; each sends a transfer between a few pre-funded accounts, waits for
its answer, and sends the next, for ``--seconds``. Every (mode, N) pair runs ``--runs`` times,
each with a fresh client (so a run opens its own streams). Prints one line per run, then a JSON
summary (transfers/s per mode and N).

Against a dev cluster (3 write nodes on 127.0.0.1:50051-50053, a read node on :50061)::

    walletctl dev --data-dir "$(mktemp -d)"          # in another terminal; Ctrl-C stops it
    cd client-sdk/python                             # (walletctl: target/debug/walletctl)
    PYTHONPATH=src python examples/throughput.py --clients 1,32 --seconds 10 --runs 2

``walletctl dev`` always listens on those ports. If they are taken, start the three write
nodes yourself on others, as ``dev`` would (8 partitions; no read node is needed here), and
pass them with ``--write``::

    d=$(mktemp -d); peers=1=127.0.0.1:36051,2=127.0.0.1:36052,3=127.0.0.1:36053
    for i in 1 2 3; do
      target/debug/wallet-write-node --node-id $i --listen 127.0.0.1:3605$i --peers $peers \\
        --data-dir $d/node-$i --partitions 8 --metrics-listen off >$d/node-$i.log 2>&1 &
    done
    PYTHONPATH=src python examples/throughput.py --write 127.0.0.1:36051,127.0.0.1:36052,127.0.0.1:36053
    kill %1 %2 %3

Accounts get a fresh random prefix, so reruns against the same cluster do not collide. Every
transfer must succeed (the accounts hold far more than the run can move); a failed one is
counted and reported, not retried.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
import uuid
from typing import Dict, List

from wallet_ledger import Rejected, RetryPolicy, WalletClient, WalletError, new_transaction_id

DEFAULT_WRITE = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053"


def prepare(writes: List[str], prefix: str, accounts: int) -> List[str]:
    """Opens ``accounts`` accounts and funds each from an issuer that may go negative."""
    names = [f"{prefix}acct-{n}" for n in range(accounts)]
    with WalletClient(writes) as wallet:
        issuer = prefix + "issuer"
        wallet.open_account(issuer, "USD", allow_negative_balance=True)
        for name in names:
            wallet.open_account(name, "USD")
            wallet.transfer(
                transaction_id=new_transaction_id(),
                from_account=issuer,
                to_account=name,
                amount="1000000.00",
                currency="USD",
            )
    return names


def run(writes: List[str], names: List[str], clients: int, seconds: float, pipelined: bool) -> Dict[str, object]:
    """One closed-loop run: ``clients`` threads on one fresh client for ``seconds``."""
    policy = RetryPolicy()
    with WalletClient(writes, policy, pipeline_transfers=pipelined) as wallet:
        for name in names:  # learns each account's leader (opening again is a no-op success)
            wallet.open_account(name, "USD")
        latencies: List[List[float]] = [[] for _ in range(clients)]
        failures: List[int] = [0] * clients
        start = threading.Barrier(clients + 1)
        stop_at = [0.0]

        def client(index: int) -> None:
            rng = random.Random(index)
            mine = latencies[index]
            start.wait()
            while time.monotonic() < stop_at[0]:
                source, target = rng.sample(names, 2)
                began = time.monotonic()
                try:
                    wallet.transfer(
                        transaction_id=new_transaction_id(),
                        from_account=source,
                        to_account=target,
                        amount="0.01",
                        currency="USD",
                    )
                except (Rejected, WalletError):
                    failures[index] += 1
                    continue
                mine.append(time.monotonic() - began)

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
        for thread in threads:
            thread.start()
        stop_at[0] = time.monotonic() + seconds
        began = time.monotonic()
        start.wait()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        stats = wallet.pipeline_stats()
    done = [latency for per_client in latencies for latency in per_client]
    return {
        "mode": "pipelined" if pipelined else "unary",
        "clients": clients,
        "transfers": len(done),
        "failed": sum(failures),
        "per_second": round(len(done) / elapsed, 1),
        "p50_ms": round(statistics.median(done) * 1000, 2) if done else None,
        "streams": stats.streams,
        "unary_transfers": stats.unary_transfers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", default=DEFAULT_WRITE, help="write node endpoints, comma-separated")
    parser.add_argument("--clients", default="1,32", help="thread counts to run, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=2, help="runs of each (mode, clients)")
    parser.add_argument("--accounts", type=int, default=8, help="pre-funded accounts transfers go between")
    parser.add_argument("--modes", default="pipelined,unary", help="pipelined and/or unary")
    args = parser.parse_args()
    writes = args.write.split(",")
    names = prepare(writes, f"tput-{uuid.uuid4().hex[:8]}-", max(args.accounts, 2))
    results: List[Dict[str, object]] = []
    for clients in (int(c) for c in args.clients.split(",")):
        for attempt in range(args.runs):
            for mode in args.modes.split(","):
                result = run(writes, names, clients, args.seconds, mode == "pipelined")
                result["run"] = attempt + 1
                results.append(result)
                print(
                    f"{result['mode']:>9} clients={clients:<3} run {attempt + 1}: {result['per_second']} transfers/s "
                    f"(p50 {result['p50_ms']} ms, {result['transfers']} done, {result['failed']} failed, "
                    f"{result['streams']} streams, {result['unary_transfers']} unary)",
                    flush=True,
                )
    summary: Dict[str, List[object]] = {}
    for result in results:
        summary.setdefault(f"{result['mode']} x{result['clients']}", []).append(result["per_second"])
    print(json.dumps({"per_second": summary, "runs": results}))


if __name__ == "__main__":
    main()
