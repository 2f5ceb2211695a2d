#!/usr/bin/env bash
# A whole-machine CPU profile of a stream run (BENCHMARKS.md, "2026-12-06"): a dev cluster,
# 20k accounts, 40 s of `SubmitTransfers`, `perf record -a -g` for 10 s in the middle. Not a
# test: it prints the run's throughput and where perf.data is; read it with
#   perf report -i PERF_DATA --no-children --sort comm --stdio -g none      # by thread
#   perf report -i PERF_DATA --no-children --comm store --sort symbol --stdio -g none
#
#   loadtest/profile.sh BIN_DIR   # BIN_DIR holds walletctl, wallet-loadtest and the nodes
set -euo pipefail
B=$1
D=/var/tmp/profile-$(basename "$B")
# shellcheck source=loadtest/dev-cluster.sh
source "$(dirname "$0")/dev-cluster.sh"
"$B/wallet-loadtest" --target wallet --api stream --clients 8 --in-flight 512 --accounts 20000 \
    --duration 40s --no-progress --format json --no-verify --run-id "p$RANDOM" \
    >"$D/load.json" 2>"$D/load.err" &
LOAD=$!
sleep 25
perf record -F 999 -g -a -o "$D/perf.data" -- sleep 10 2>/dev/null
wait $LOAD
grep -o '"transfers_per_second": [0-9.]*' "$D/load.json" | head -1
echo "profile: $D/perf.data"
