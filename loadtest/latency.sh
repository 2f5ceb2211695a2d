#!/usr/bin/env bash
# Latency on a fresh dev cluster (3 write nodes, a read node, 8 partitions, 10k accounts): the
# throughput issue's single-client and open-loop targets, and the raft log's fsyncs per entry.
# Not a test: it prints, per run, p50 and p99 of
#   - one client, sequential, within a partition and at 50% cross-partition (10 s each);
#   - an open loop at RATE transfers/s (default 3,500: half of what 32 unary clients reach
#     here), 32 clients through the SDK, with 4 watchers timing commit -> push (15 s);
# and node 1's fsyncs of the raft log per raft entry over the whole script
# (`wallet_synced_write_entries` _count / _sum).
#
#   loadtest/latency.sh BIN_DIR            # BIN_DIR holds walletctl, wallet-loadtest and the
#   RATE=7000 loadtest/latency.sh BIN_DIR  # node binaries (e.g. a build kept for before/after)
set -euo pipefail
B=$1
D=/var/tmp/latency-$(basename "$B")
# shellcheck source=loadtest/dev-cluster.sh
source "$(dirname "$0")/dev-cluster.sh"
ENDPOINTS=127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053
run() { # label, then loadtest flags
    local label=$1
    shift
    "$B/wallet-loadtest" --target wallet --endpoints "$ENDPOINTS" --accounts 10000 \
        --no-progress --format json --no-verify --run-id "lat$RANDOM" "$@" >"$D/$label.json" \
        2>"$D/$label.err"
    python3 - "$label" "$D/$label.json" <<'PY'
import json, sys
label, path = sys.argv[1], sys.argv[2]
report = json.load(open(path))
latency = report["latency"]
line = f"{label}: {report['transfers_per_second']:.0f}/s, p50 {latency['p50_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms"
push = report.get("push_lag")
if push:
    line += f", push p50 {push['p50_ms']:.1f} ms, p99 {push['p99_ms']:.1f} ms"
print(line)
PY
}
run sequential-within --clients 1 --in-flight 1 --cross-share 0 --duration 10s
run sequential-cross --clients 1 --in-flight 1 --cross-share 0.5 --duration 10s
run open-loop --clients 32 --in-flight 512 --cross-share 0.5 --rate "${RATE:-3500}" \
    --watchers 4 --duration 15s
curl -s 127.0.0.1:51051/metrics | python3 -c '
import sys
values = {}
for line in sys.stdin:
    if line.startswith("wallet_synced_write_entries_"):
        name, value = line.split()[:2]
        values[name.split("{")[0]] = float(value)
count, total = values.get("wallet_synced_write_entries_count", 0), values.get("wallet_synced_write_entries_sum", 0)
print(f"node 1: {count:.0f} fsyncs of the raft log for {total:.0f} entries: {count / max(total, 1):.3f} per entry")
'
