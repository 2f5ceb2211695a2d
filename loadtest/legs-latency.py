"""Sequential latency of TransferLegs within one partition and across two, one client.

The accounts' names are fixed so that, in a cluster of 4 partitions, the first three share one
partition and `py-legs-3` is in another (the names client-sdk/python/tests/live_check.py uses).
Usage: legs-latency.py HOST:PORT,HOST:PORT,...  (see legs-latency.sh)."""
import statistics
import sys
import time
from wallet_ledger import WalletClient, Leg, new_transaction_id

writes = sys.argv[1]
HOME = ("py-legs-0", "py-legs-2", "py-legs-7")   # one partition of 4
ELSEWHERE = "py-legs-3"                            # another
with WalletClient(writes.split(",")) as wallet:
    wallet.open_account("bank", "USD", allow_negative_balance=True)
    for account in (*HOME, ELSEWHERE):
        wallet.open_account(account, "USD")
        wallet.transfer(transaction_id=new_transaction_id(), from_account="bank", to_account=account, amount="100000.00", currency="USD")
    shapes = {
        "within": [Leg(HOME[0], HOME[1], "1.00", "USD"), Leg(HOME[1], HOME[2], "0.50", "USD")],
        "across": [Leg(HOME[0], ELSEWHERE, "1.00", "USD"), Leg(ELSEWHERE, HOME[2], "0.50", "USD")],
    }
    times = {name: [] for name in shapes}
    for round_ in range(4):
        for name, legs in shapes.items():
            for _ in range(100):
                start = time.perf_counter()
                done = wallet.transfer_legs(legs, transaction_id=new_transaction_id())
                times[name].append(time.perf_counter() - start)
                assert done.status == "success"
    for name, samples in times.items():
        samples = samples[20:]
        samples.sort()
        p50 = samples[len(samples) // 2] * 1000
        p99 = samples[int(len(samples) * 0.99)] * 1000
        print(f"{name}: n={len(samples)} p50={p50:.2f} ms p99={p99:.2f} ms mean={statistics.mean(samples)*1000:.2f} ms")
