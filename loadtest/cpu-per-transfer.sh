#!/usr/bin/env bash
# Write-node CPU per committed transfer in the middle of a stream run (the engine issue's
# "-30% CPU per transfer" target; BENCHMARKS.md). A fresh dev cluster (3 write nodes, a read
# node, 8 partitions), 20k accounts, 40 s of `SubmitTransfers` (8 streams x 512, 50%
# cross-partition); over the 10 s from 25 s in, the three write nodes' CPU time (user +
# system, /proc/PID/stat) and the transfers committed (`wallet_transfers_committed`, which
# every replica counts as it applies: summed over the nodes and divided by the replicas).
# Not a test: it prints the window's transfers/s and the write nodes' CPU per transfer,
# summed over the nodes (a transfer's cost to the whole replicated cluster, the load
# generator left out) and per node, and the read node's.
#
#   loadtest/cpu-per-transfer.sh BIN_DIR   # BIN_DIR holds walletctl, wallet-loadtest and
#                                          # the node binaries
#   API=unary CLIENTS=32 IN_FLIGHT=32 loadtest/cpu-per-transfer.sh BIN_DIR   # unary calls
#   WRITE_NODES=6 REPLICAS=3 loadtest/cpu-per-transfer.sh BIN_DIR   # partitions placed on
#                                          # 3 of 6 nodes (default 3 and 3)
set -euo pipefail
B=$1
D=/var/tmp/cpu-per-transfer-$(basename "$B")
WRITE_NODES=${WRITE_NODES:-3}
REPLICAS=${REPLICAS:-3}
if [[ $WRITE_NODES != 3 || $REPLICAS != 3 ]]; then
    DEV_ARGS="${DEV_ARGS:-} --write-nodes $WRITE_NODES --replicas $REPLICAS"
    WALLET_ENDPOINTS=$(seq -s, -f "127.0.0.1:%g" 50051 $((50050 + WRITE_NODES)))
    export WALLET_ENDPOINTS
fi
# shellcheck source=loadtest/dev-cluster.sh
source "$(dirname "$0")/dev-cluster.sh"
"$B/wallet-loadtest" --target wallet --api "${API:-stream}" --clients "${CLIENTS:-8}" \
    --in-flight "${IN_FLIGHT:-512}" --accounts 20000 \
    --cross-share 0.5 --duration 40s --no-progress --format json --no-verify \
    --run-id "cpu$RANDOM" >"$D/load.json" 2>"$D/load.err" &
LOAD=$!
mapfile -t NODES < <(pgrep -P "$DEV" -f wallet-write-node)
[[ ${#NODES[@]} -eq $WRITE_NODES ]] || { echo "expected $WRITE_NODES write nodes, found ${#NODES[*]}" >&2; exit 1; }
READ_NODE=$(pgrep -P "$DEV" -f wallet-read-node)
ticks() { # user + system clock ticks of the given processes, summed
    local total=0 pid fields
    for pid in "$@"; do
        read -ra fields < <(sed 's/.*) //' "/proc/$pid/stat")
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}
committed() { # transfers committed: every replica counts its partitions' own
    local node
    for node in $(seq 1 "$WRITE_NODES"); do curl -s "127.0.0.1:$((51050 + node))/metrics"; done |
        awk -v r="$REPLICAS" '/^wallet_transfers_committed(_total)?[{ ]/ { sum += $NF } END { printf "%d", sum / r }'
}
sleep 25
t0=$(ticks "${NODES[@]}") r0=$(ticks "$READ_NODE") c0=$(committed) s0=$(date +%s%N)
sleep 10
t1=$(ticks "${NODES[@]}") r1=$(ticks "$READ_NODE") c1=$(committed) s1=$(date +%s%N)
wait $LOAD
hz=$(getconf CLK_TCK)
awk -v t="$((t1 - t0))" -v r="$((r1 - r0))" -v c="$((c1 - c0))" -v ns="$((s1 - s0))" -v hz="$hz" -v n="$WRITE_NODES" 'BEGIN {
    printf "window: %d transfers, %.0f transfers/s\n", c, c / (ns / 1e9)
    printf "write-node CPU per transfer: %.1f us (%d nodes together)\n", t / hz / c * 1e6, n
    printf "write-node CPU per transfer and node: %.1f us\n", t / hz / c * 1e6 / n
    printf "read-node CPU per transfer: %.1f us\n", r / hz / c * 1e6
}'
grep -o '"transfers_per_second": [0-9.]*' "$D/load.json" | head -1
