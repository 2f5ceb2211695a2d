#!/usr/bin/env bash
# How long a status call with state digests takes on a loaded dev cluster, and the longest
# store-loop round around it (BENCHMARKS.md, "The stall itself"). Not a test: it prints.
#
#   loadtest/status-stall.sh BIN_DIR [ACCOUNTS]   # BIN_DIR holds walletctl, wallet-loadtest
#                                                 # and the node binaries; ACCOUNTS: 400000
set -euo pipefail
B=$1
N=${2:-400000}
D=/var/tmp/status-stall-$(basename "$B")
# shellcheck source=loadtest/dev-cluster.sh
source "$(dirname "$0")/dev-cluster.sh"
"$B/wallet-loadtest" --target wallet --api stream --clients 8 --accounts "$N" --duration 5s \
    --no-progress --format json --run-id "stall$RANDOM" >"$D/load.json" 2>"$D/load.err"
grep -o '"transfers_per_second": [0-9.]*' "$D/load.json" | head -1
for _ in 1 2 3; do
    started=$(date +%s%N)
    "$B/walletctl" cluster status >/dev/null
    echo "status with digests: $(( ($(date +%s%N) - started) / 1000000 )) ms"
    # Node 1's metrics (gRPC port + 1000); absent on builds before the metric existed.
    curl -s 127.0.0.1:51051/metrics | grep -E '^wallet_store_round_longest_seconds' || true
    sleep 1.2
done
