#!/usr/bin/env bash
# A replica move under load (issue 17; BENCHMARKS.md): a fresh dev cluster of 4 write nodes
# with 3 replicas of each of 8 partitions, 20k accounts, 60 s of `SubmitTransfers` (8 streams
# x 512, 50% cross-partition). From 25 s in, partition 0's replica on its leader moves to
# the write node without one (`walletctl partition move`: learner, snapshot or log catch-up,
# leadership handed over, joint consensus, leave). Not a test: it prints how long the move
# took, and the cluster's committed transfers/s over the 10 s before the move, during it,
# and over the 10 s after it. With DRAIN=N, node N is drained instead (`walletctl node
# drain`: each of its replicas moves to another node, one after the other).
#
#   loadtest/move-under-load.sh BIN_DIR   # BIN_DIR holds walletctl, wallet-loadtest and
#                                         # the node binaries
#   WRITE_NODES=6 DRAIN=6 loadtest/move-under-load.sh BIN_DIR   # a drain (default 4 nodes)
set -euo pipefail
B=$1
D=/var/tmp/move-under-load-$(basename "$B")
WRITE_NODES=${WRITE_NODES:-4}
REPLICAS=3
DEV_ARGS="--write-nodes $WRITE_NODES --replicas $REPLICAS"
WALLET_ENDPOINTS=$(seq -s, -f "127.0.0.1:%g" 50051 $((50050 + WRITE_NODES)))
export WALLET_ENDPOINTS
# shellcheck source=loadtest/dev-cluster.sh
source "$(dirname "$0")/dev-cluster.sh"
"$B/wallet-loadtest" --target wallet --api stream --clients 8 --in-flight 512 \
    --accounts 20000 --cross-share 0.5 --duration 60s --no-progress --format json \
    --no-verify --run-id "move$RANDOM" >"$D/load.json" 2>"$D/load.err" &
LOAD=$!
committed() { # transfers committed: every replica counts its partitions' own
    local node
    for node in $(seq 1 "$WRITE_NODES"); do curl -s "127.0.0.1:$((51050 + node))/metrics"; done |
        awk -v r="$REPLICAS" '/^wallet_transfers_committed(_total)?[{ ]/ { sum += $NF } END { printf "%d", sum / r }'
}
now() { date +%s%N; }
sleep 15
c0=$(committed) s0=$(now)
sleep 10
c1=$(committed) s1=$(now)
if [[ -n ${DRAIN:-} ]]; then
    WHAT="drain of node $DRAIN"
    "$B/walletctl" --json node drain "$DRAIN" >"$D/move.json"
else
    # Partition 0: its leader's replica moves to a node holding none.
    read -r FROM TO < <("$B/walletctl" --json cluster status | python3 -c '
import json, sys
status = next(json.loads(line) for line in sys.stdin if json.loads(line).get("ok"))
p = status["partitions"][0]
nodes = [n["node_id"] for n in status["nodes"]]
print(p["leader_id"], next(n for n in nodes if n not in p["replica_ids"]))')
    WHAT="move of partition 0 from node $FROM to node $TO"
    "$B/walletctl" --json partition move 0 --from "$FROM" --to "$TO" >"$D/move.json"
fi
c2=$(committed) s2=$(now)
sleep 10
c3=$(committed) s3=$(now)
wait $LOAD
awk -v what="$WHAT" -v c0="$c0" -v c1="$c1" -v c2="$c2" -v c3="$c3" \
    -v s0="$s0" -v s1="$s1" -v s2="$s2" -v s3="$s3" 'BEGIN {
    printf "%s: %.2f s\n", what, (s2 - s1) / 1e9
    printf "transfers/s: before %.0f, during %.0f, after %.0f\n",
        (c1 - c0) / ((s1 - s0) / 1e9), (c2 - c1) / ((s2 - s1) / 1e9), (c3 - c2) / ((s3 - s2) / 1e9)
}'
cat "$D/move.json"
